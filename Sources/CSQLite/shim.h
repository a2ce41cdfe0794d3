// The only place the system's libsqlite3 is imported (the daemon's state store, CellprovStore/SQLite.swift).
#include <sqlite3.h>

/// SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift cannot import: SQLite copies the
/// bound text before sqlite3_bind_text returns.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }
