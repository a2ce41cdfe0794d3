import CellprovSerial

/// The byte pipe an ``ATChannel`` talks over: a serial port in production, anything that moves bytes in tests.
public protocol ATTransport: Sendable {
    /// Starts delivery to `handler`: bytes as they arrive, in order, then one `.closed`. Called once.
    func start(_ handler: @escaping @Sendable (SerialEvent) -> Void)
    func write(_ bytes: [UInt8]) throws(SerialError)
    func close()
}

extension SerialPort: ATTransport {
    public func write(_ bytes: [UInt8]) throws(SerialError) {
        try write(bytes, timeoutMilliseconds: 2000)
    }
}
