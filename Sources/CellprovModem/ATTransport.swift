import CellprovSerial

/// The byte pipe an ``ATChannel`` talks over: a serial port in production, anything that moves bytes in tests.
public protocol ATTransport: Sendable {
    /// Bytes as they arrive, then one `.closed`. Consumed by exactly one channel.
    var events: AsyncStream<SerialEvent> { get }
    func write(_ bytes: [UInt8]) throws(SerialError)
    func close()
}

extension SerialPort: ATTransport {
    public func write(_ bytes: [UInt8]) throws(SerialError) {
        try write(bytes, timeoutMilliseconds: 2000)
    }
}
