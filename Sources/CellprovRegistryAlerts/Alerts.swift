import AsyncHTTPClient
import CellprovRegistryCore

/// cellprov-registry's outbound alerts.
public enum RegistryAlerts {}
