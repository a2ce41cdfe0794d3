import CellprovCore
import CellprovFuzzSupport

// Fuzz target: the port table (PortTable(tsv:), the text of udev/ports.tsv or a [discovery] ports_table file).
//
// Properties: it parses or throws a ParseError naming a line of the text; an accepted table's keys are
// normalised (4 lower-case hex digits; "03", "ff/02/01" or a WWAN port name such as "at1"), unique, and each row
// is found again by lookup (lookupWWAN for WWAN port rows).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let text = String(decoding: input.rest(), as: UTF8.self)
    let table: PortTable
    do {
        table = try PortTable(tsv: text)
    } catch let error as PortTable.ParseError {
        fuzzRequire(error.line >= 0 && !error.message.isEmpty, "a parse error without line or message")
        return 0
    } catch {
        fuzzRequire(false, "PortTable threw something else than a ParseError")
        return 0
    }
    let lowerHex = Set("0123456789abcdef".utf8)
    var keys = Set<String>()
    for row in table.rows {
        fuzzRequire(row.vendorID.utf8.count == 4 && row.vendorID.utf8.allSatisfy(lowerHex.contains), "vendor id")
        fuzzRequire(row.productID.utf8.count == 4 && row.productID.utf8.allSatisfy(lowerHex.contains), "product id")
        let isNumber = row.interface.utf8.count == 2 && row.interface.utf8.allSatisfy(lowerHex.contains)
        let isTriple = row.interface.utf8.count == 8 && row.interface.contains("/")
        let isWWAN = !isNumber && !isTriple
        if isWWAN {
            let letters = row.interface.prefix { $0.isASCII && $0.isLowercase }
            let digits = row.interface.dropFirst(letters.count)
            fuzzRequire(
                (2...10).contains(letters.count) && (1...3).contains(digits.count)
                    && digits.allSatisfy { $0.isASCII && $0.isNumber }, "interface key '\(row.interface)'")
        }
        let key = "\(row.vendorID):\(row.productID):\(row.interface)"
        fuzzRequire(keys.insert(key).inserted, "a port twice in an accepted table")
        let found =
            isWWAN
            ? table.lookupWWAN(vendor: row.vendorID, product: row.productID, port: row.interface)
            : table.lookup(
                vendor: row.vendorID, product: row.productID, interfaceNumber: isNumber ? row.interface : nil,
                classTriple: isNumber ? nil : row.interface)
        fuzzRequire(found == row, "a row not found again by lookup")
        fuzzRequire(table.knows(vendor: row.vendorID.uppercased(), product: row.productID), "knows() misses a row")
    }
    return 0
}

FuzzDriver.main(fuzzOne)
