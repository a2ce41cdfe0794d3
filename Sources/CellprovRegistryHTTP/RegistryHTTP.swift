import CellprovRegistryCore
import Hummingbird
import Mustache
import Prometheus

/// cellprov-registry's HTTP layer.
public enum RegistryHTTP {}
