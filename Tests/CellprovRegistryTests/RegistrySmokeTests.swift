import CellprovRegistryCore
import Testing

@Suite struct RegistrySmokeTests {
    @Test func defaultDatabaseIsSQLite() {
        #expect(Registry.defaultDatabaseURL.hasPrefix("sqlite:///"))
    }
}
