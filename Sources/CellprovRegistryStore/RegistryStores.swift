import CellprovRegistryCore
import GRDB
import PostgresNIO

/// The storage backends of cellprov-registry.
public enum RegistryStores {}
