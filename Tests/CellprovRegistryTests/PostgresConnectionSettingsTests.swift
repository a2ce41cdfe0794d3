import CellprovRegistryStore
import Testing

/// libpq's rules for a `postgres://` URL, the PG* variables and the password file (PostgresConnectionSettings.swift),
/// as tables: the inputs (environment, operating-system user, home, files) are given, nothing is read from the
/// machine. The real server: Tests/registry/test_pg_connect.py.
@Suite struct PostgresConnectionSettingsTests {
    typealias L = PostgresLocation

    static func inputs(
        env: [String: String] = [:], user: String? = "svc", home: String? = "/home/svc",
        files: [String: PostgresFileState] = [:]
    ) -> PostgresSettingsInputs {
        PostgresSettingsInputs(environment: env, operatingSystemUser: user, home: home, file: { files[$0] ?? .missing })
    }

    static let noPassfile = PostgresSettingSource.notFound(
        "none in the URL, PGPASSWORD unset, no password file /home/svc/.pgpass")

    // MARK: the URI

    struct URICase: Sendable, CustomTestStringConvertible {
        var url: String
        var expected: [String: String]?
        var error: String? = nil
        var testDescription: String { url }
    }

    static let uriCases: [URICase] = [
        URICase(url: "postgres://reg@db.example:6543/fleet",
            expected: ["user": "reg", "host": "db.example", "port": "6543", "dbname": "fleet"]),
        URICase(url: "postgresql://reg:s%3Acr%2Fet%40x@127.0.0.1/fleet",
            expected: ["user": "reg", "password": "s:cr/et@x", "host": "127.0.0.1", "dbname": "fleet"]),
        URICase(url: "postgres:///cellprov?host=/run/postgresql",
            expected: ["dbname": "cellprov", "host": "/run/postgresql"]),
        URICase(url: "postgres://%2Fvar%2Flib%2Fpostgresql/db",
            expected: ["host": "/var/lib/postgresql", "dbname": "db"]),
        URICase(url: "postgres://[::1]:5433/db", expected: ["host": "::1", "port": "5433", "dbname": "db"]),
        URICase(url: "postgres://[2001:db8::7]/db?sslmode=require",
            expected: ["host": "2001:db8::7", "dbname": "db", "sslmode": "require"]),
        URICase(url: "postgres://h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=a+b%20c",
            expected: ["host": "h", "dbname": "db", "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem",
                "application_name": "a+b c"]),
        URICase(url: "postgres://h:1/db?host=other&port=2", expected: ["host": "other", "port": "2", "dbname": "db"]),
        URICase(url: "postgres://h/db?ssl=true", expected: ["host": "h", "dbname": "db", "sslmode": "require"]),
        URICase(url: "postgresql://", expected: [:]),
        URICase(url: "postgresql:///", expected: [:]),
        URICase(url: "POSTGRES://u@/d", expected: ["user": "u", "dbname": "d"]),
        URICase(url: "postgres://:pw@h/d", expected: ["password": "pw", "host": "h", "dbname": "d"]),
        URICase(url: "postgres://a:1,b:2/d", expected: ["host": "a,b", "port": "1,2", "dbname": "d"]),
        URICase(url: "postgres://h/d?user=x&dbname=y&passfile=/p&connect_timeout=5&hostaddr=10.0.0.1",
            expected: ["host": "h", "dbname": "y", "user": "x", "passfile": "/p", "connect_timeout": "5",
                "hostaddr": "10.0.0.1"]),
        URICase(url: "postgres://h/d?a", expected: nil, error: "no '='"),
        URICase(url: "postgres://h/d?user=a=b", expected: nil, error: "more than one '='"),
        URICase(url: "postgres://h/d?bogus=1", expected: nil, error: "unknown parameter 'bogus'"),
        URICase(url: "postgres://h/d?sslcert=/c.pem", expected: nil,
            error: "'sslcert' is one cellprov-registry does not"),
        URICase(url: "postgres://h/d?ssl=false", expected: nil, error: "ssl parameter"),
        URICase(url: "postgres://h/d%zz", expected: nil, error: "malformed %-escape"),
        URICase(url: "postgres://h/d%0", expected: nil, error: "malformed %-escape"),
        URICase(url: "postgres://h/d%00x", expected: nil, error: "%00"),
        URICase(url: "postgres://h/d%ff", expected: nil, error: "not UTF-8"),
        URICase(url: "postgres://[::1/d", expected: nil, error: "without ']'"),
        URICase(url: "postgres://[]/d", expected: nil, error: "empty '[]'"),
        URICase(url: "postgres://[::1]x/d", expected: nil, error: "after an IPv6 address"),
        URICase(url: "postgres://h/d#frag", expected: nil, error: "fragment"),
        URICase(url: "mysql://h/d", expected: nil, error: "starts with postgres://"),
    ]

    @Test(arguments: uriCases)
    func uri(_ c: URICase) throws {
        if let expected = c.expected {
            #expect(try PostgresURI.parse(c.url) == expected)
        } else {
            do {
                let parsed = try PostgresURI.parse(c.url)
                Issue.record("accepted: \(parsed)")
            } catch {
                #expect("\(error)".contains(c.error ?? "?"), "\(error)")
            }
        }
    }

    // MARK: the password file

    struct PassCase: Sendable, CustomTestStringConvertible {
        var name: String
        var file: String
        var key: (host: String, port: String, database: String, user: String) = ("db", "5432", "fleet", "reg")
        var expected: (String, Int)?
        var testDescription: String { name }
    }

    static let passCases: [PassCase] = [
        PassCase(name: "exact line", file: "db:5432:fleet:reg:pw\n", expected: ("pw", 1)),
        PassCase(name: "first match wins", file: "db:5432:fleet:reg:one\n*:*:*:*:two\n", expected: ("one", 1)),
        PassCase(name: "wildcards", file: "other:5432:fleet:reg:x\n*:*:fleet:*:w\n", expected: ("w", 2)),
        PassCase(name: "comments and blank lines skipped", file: "# db:5432:fleet:reg:c\n\n*:*:*:reg:y\n",
            expected: ("y", 3)),
        PassCase(name: "CRLF", file: "db:5432:fleet:reg:pw\r\n", expected: ("pw", 1)),
        PassCase(name: "no newline at the end", file: "x:1:y:z:a\ndb:5432:fleet:reg:pw", expected: ("pw", 2)),
        PassCase(name: "escaped colon and backslash in the password", file: #"db:5432:fleet:reg:p\:w\\x"#,
            expected: (#"p:w\x"#, 1)),
        PassCase(name: "the password ends at an unescaped colon", file: "db:5432:fleet:reg:a:b", expected: ("a", 1)),
        PassCase(name: "escaped colon in a field", file: #"db:5432:fleet:we\:ird:pw"#,
            key: ("db", "5432", "fleet", "we:ird"), expected: ("pw", 1)),
        PassCase(name: "socket directory as the host", file: "/run/postgresql:5432:fleet:reg:s",
            key: ("/run/postgresql", "5432", "fleet", "reg"), expected: ("s", 1)),
        PassCase(name: "'*' only as a whole field", file: "d*:5432:fleet:reg:pw", expected: nil),
        PassCase(name: "a prefix is no match", file: "d:5432:fleet:reg:pw\ndbx:5432:fleet:reg:pw", expected: nil),
        PassCase(name: "wrong port", file: "db:5433:fleet:reg:pw", expected: nil),
        PassCase(name: "too few fields", file: "db:5432:fleet", expected: nil),
        PassCase(name: "case matters", file: "DB:5432:fleet:reg:pw", expected: nil),
        PassCase(name: "empty password", file: "db:5432:fleet:reg:", expected: ("", 1)),
    ]

    @Test(arguments: passCases)
    func passwordFile(_ c: PassCase) {
        let found = PgPassFile.lookup(
            c.file, host: c.key.host, port: c.key.port, database: c.key.database, user: c.key.user)
        #expect(found?.password == c.expected?.0)
        #expect(found?.line == c.expected?.1)
    }

    // MARK: resolution

    struct ResolveCase: Sendable, CustomTestStringConvertible {
        var name: String
        var url: String
        var inputs: PostgresSettingsInputs = PostgresConnectionSettingsTests.inputs()
        var expected: PostgresLocation?
        var error: String? = nil
        var testDescription: String { name }
    }

    static let pass0600 = PostgresFileState.regular(mode: 0o600, contents: "*:*:*:svc:from-file\n")

    static let resolveCases: [ResolveCase] = [
        ResolveCase(
            name: "peer: socket directory only, the operating-system user",
            url: "postgres:///cellprov?host=/run/postgresql",
            expected: L(
                endpoint: .unixSocket(path: "/run/postgresql/.s.PGSQL.5432"), user: "svc", password: nil,
                database: "cellprov", tls: .prefer, tlsAttempts: [.plain],
                sources: .init(
                    host: .url, port: .builtIn("by default"), user: .operatingSystemUser, database: .url,
                    password: noPassfile, sslmode: .builtIn("by default")))),
        ResolveCase(
            name: "nothing given: Debian's default socket, user and database from the operating system",
            url: "postgres://",
            expected: L(
                endpoint: .unixSocket(path: "/var/run/postgresql/.s.PGSQL.5432"), user: "svc", password: nil,
                database: "svc", tls: .prefer, tlsAttempts: [.plain],
                sources: .init(
                    host: .builtIn("by default"), port: .builtIn("by default"),
                    user: .operatingSystemUser, database: .userName, password: noPassfile,
                    sslmode: .builtIn("by default")))),
        ResolveCase(
            name: "the environment fills what the URL leaves out",
            url: "postgresql://",
            inputs: inputs(env: [
                "PGHOST": "/srv/pg/", "PGPORT": "5433", "PGUSER": "reg", "PGDATABASE": "fleet",
                "PGPASSWORD": "envpw", "PGSSLMODE": "require", "PGAPPNAME": "reg-a", "PGCONNECT_TIMEOUT": "1",
            ]),
            expected: L(
                endpoint: .unixSocket(path: "/srv/pg/.s.PGSQL.5433"), user: "reg", password: "envpw",
                database: "fleet", tls: .require, tlsAttempts: [.plain], applicationName: "reg-a",
                connectTimeoutSeconds: 2,
                sources: .init(
                    host: .environment("PGHOST"), port: .environment("PGPORT"), user: .environment("PGUSER"),
                    database: .environment("PGDATABASE"), password: .environment("PGPASSWORD"),
                    sslmode: .environment("PGSSLMODE")))),
        ResolveCase(
            name: "the URL wins over the environment",
            url: "postgres://a:urlpw@db.example:7000/one?sslmode=disable",
            inputs: inputs(env: [
                "PGHOST": "other", "PGPORT": "1", "PGUSER": "b", "PGDATABASE": "two", "PGPASSWORD": "envpw",
                "PGSSLMODE": "require",
            ]),
            expected: L(
                endpoint: .tcp(host: "db.example", port: 7000), user: "a", password: "urlpw", database: "one",
                tls: .disable, tlsAttempts: [.plain])),
        ResolveCase(
            name: "an empty URL value shadows the variable (the default applies), as in libpq",
            url: "postgres://db/fleet?user=&sslmode=disable",
            inputs: inputs(env: ["PGUSER": "b"]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "svc", password: nil, database: "fleet",
                tls: .disable, tlsAttempts: [.plain],
                sources: .init(
                    host: .url, port: .builtIn("by default"), user: .operatingSystemUser, database: .url,
                    password: noPassfile))),
        ResolveCase(
            name: "password from ~/.pgpass (mode 0600)",
            url: "postgres://svc@db/fleet?sslmode=disable",
            inputs: inputs(files: ["/home/svc/.pgpass": pass0600]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "svc", password: "from-file", database: "fleet",
                tls: .disable, tlsAttempts: [.plain],
                sources: .init(
                    port: .builtIn("by default"), password: .passwordFile(path: "/home/svc/.pgpass", line: 1)))),
        ResolveCase(
            name: "PGPASSWORD beats the password file",
            url: "postgres://svc@db/fleet?sslmode=disable",
            inputs: inputs(env: ["PGPASSWORD": "envpw"], files: ["/home/svc/.pgpass": pass0600]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "svc", password: "envpw", database: "fleet",
                tls: .disable, tlsAttempts: [.plain],
                sources: .init(port: .builtIn("by default"), password: .environment("PGPASSWORD")))),
        ResolveCase(
            name: "PGPASSFILE names the file; the passfile parameter beats it",
            url: "postgres://svc@db/fleet?sslmode=disable&passfile=/etc/reg/pgpass",
            inputs: inputs(env: ["PGPASSFILE": "/nowhere"], files: ["/etc/reg/pgpass": pass0600]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "svc", password: "from-file", database: "fleet",
                tls: .disable, tlsAttempts: [.plain],
                sources: .init(
                    port: .builtIn("by default"), password: .passwordFile(path: "/etc/reg/pgpass", line: 1)))),
        ResolveCase(
            name: "a password file others may read is ignored, and said so",
            url: "postgres://svc@db/fleet?sslmode=disable",
            inputs: inputs(files: ["/home/svc/.pgpass": .regular(mode: 0o644, contents: "*:*:*:*:pw\n")]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "svc", password: nil, database: "fleet",
                tls: .disable, tlsAttempts: [.plain],
                sources: .init(
                    port: .builtIn("by default"),
                    password: .notFound(
                        "none in the URL, PGPASSWORD unset, password file /home/svc/.pgpass ignored: its mode 0644 "
                            + "lets others read it; use chmod 0600 /home/svc/.pgpass")),
                notes: [
                    "password file /home/svc/.pgpass ignored: its mode 0644 lets others read it; use chmod 0600 "
                        + "/home/svc/.pgpass"
                ])),
        ResolveCase(
            name: "the default socket directory is 'localhost' in the password file",
            url: "postgres:///fleet",
            inputs: inputs(files: [
                "/home/svc/.pgpass": .regular(
                    mode: 0o400, contents: "/var/run/postgresql:*:*:*:no\nlocalhost:5432:fleet:svc:yes\n")
            ]),
            expected: L(
                endpoint: .unixSocket(path: "/var/run/postgresql/.s.PGSQL.5432"), user: "svc", password: "yes",
                database: "fleet", tls: .prefer, tlsAttempts: [.plain],
                sources: .init(
                    host: .builtIn("by default"), port: .builtIn("by default"),
                    user: .operatingSystemUser, password: .passwordFile(path: "/home/svc/.pgpass", line: 2),
                    sslmode: .builtIn("by default")))),
        ResolveCase(
            name: "another socket directory is matched by its path",
            url: "postgres:///fleet?host=/run/postgresql",
            inputs: inputs(files: [
                "/home/svc/.pgpass": .regular(mode: 0o600, contents: "localhost:*:*:*:no\n/run/postgresql:*:*:*:yes\n")
            ]),
            expected: L(
                endpoint: .unixSocket(path: "/run/postgresql/.s.PGSQL.5432"), user: "svc", password: "yes",
                database: "fleet", tls: .prefer, tlsAttempts: [.plain],
                sources: .init(
                    port: .builtIn("by default"), user: .operatingSystemUser,
                    password: .passwordFile(path: "/home/svc/.pgpass", line: 2), sslmode: .builtIn("by default")))),
        ResolveCase(
            name: "hostaddr: connect to the address, check the certificate and the password file for the name",
            url: "postgres://reg@db.example/fleet?hostaddr=10.0.0.5&sslmode=verify-full&sslrootcert=/etc/ca.pem",
            inputs: inputs(files: [
                "/etc/ca.pem": .regular(mode: 0o644, contents: nil),
                "/home/svc/.pgpass": .regular(mode: 0o600, contents: "10.0.0.5:*:*:*:no\ndb.example:*:*:*:yes\n"),
            ]),
            expected: L(
                endpoint: .tcp(host: "10.0.0.5", port: 5432), user: "reg", password: "yes", database: "fleet",
                tls: .verifyFull, tlsAttempts: [.tls(.chainAndHostName(.file("/etc/ca.pem")))],
                tlsServerName: "db.example",
                sources: .init(
                    port: .builtIn("by default"), password: .passwordFile(path: "/home/svc/.pgpass", line: 2)))),
        // TLS modes.
        ResolveCase(
            name: "TCP defaults to prefer: TLS unchecked, then plain",
            url: "postgres://reg@db/fleet?password=s3cret-pw",
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .prefer,
                tlsAttempts: [.tlsIfOffered, .plain],
                sources: .init(port: .builtIn("by default"), sslmode: .builtIn("by default")))),
        ResolveCase(
            name: "allow: plain, then TLS",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslmode=allow",
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .allow,
                tlsAttempts: [.plain, .tls(.none)], sources: .init(port: .builtIn("by default")))),
        ResolveCase(
            name: "require without a root certificate checks nothing",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslmode=require",
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .require,
                tlsAttempts: [.tls(.none)], sources: .init(port: .builtIn("by default")))),
        ResolveCase(
            name: "require with ~/.postgresql/root.crt checks the chain (libpq's compatibility rule)",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslmode=require",
            inputs: inputs(files: ["/home/svc/.postgresql/root.crt": .regular(mode: 0o644, contents: nil)]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .require,
                tlsAttempts: [.tls(.chain(.file("/home/svc/.postgresql/root.crt")))],
                sources: .init(port: .builtIn("by default")))),
        ResolveCase(
            name: "verify-ca: the chain, not the name",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslmode=verify-ca&sslrootcert=/etc/ca.pem",
            inputs: inputs(files: ["/etc/ca.pem": .regular(mode: 0o644, contents: nil)]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .verifyCA, tlsAttempts: [.tls(.chain(.file("/etc/ca.pem")))],
                sources: .init(port: .builtIn("by default")))),
        ResolveCase(
            name: "verify-full from PGSSLMODE and PGSSLROOTCERT",
            url: "postgres://reg@db/fleet?password=s3cret-pw",
            inputs: inputs(
                env: ["PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem"],
                files: ["/etc/ca.pem": .regular(mode: 0o644, contents: nil)]),
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .verifyFull, tlsAttempts: [.tls(.chainAndHostName(.file("/etc/ca.pem")))],
                sources: .init(port: .builtIn("by default"), sslmode: .environment("PGSSLMODE")))),
        ResolveCase(
            name: "sslrootcert=system means verify-full",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslrootcert=system",
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .verifyFull, tlsAttempts: [.tls(.chainAndHostName(.system))],
                sources: .init(
                    port: .builtIn("by default"), sslmode: .builtIn("as sslrootcert=system requires")))),
        ResolveCase(
            name: "a unix socket never uses TLS, whatever sslmode says",
            url: "postgres:///fleet?host=/run/postgresql&sslmode=verify-full&password=s3cret-pw",
            expected: L(
                endpoint: .unixSocket(path: "/run/postgresql/.s.PGSQL.5432"), user: "svc", password: "s3cret-pw",
                database: "fleet", tls: .verifyFull, tlsAttempts: [.plain],
                sources: .init(port: .builtIn("by default"), user: .operatingSystemUser))),
        ResolveCase(
            name: "connect_timeout 0 is the default",
            url: "postgres://reg@db/fleet?password=s3cret-pw&sslmode=disable&connect_timeout=0",
            expected: L(
                endpoint: .tcp(host: "db", port: 5432), user: "reg", password: "s3cret-pw", database: "fleet",
                tls: .disable,
                sources: .init(port: .builtIn("by default")))),
        // Errors.
        ResolveCase(
            name: "verify-full without a root certificate names the file looked for",
            url: "postgres://reg@db/fleet?sslmode=verify-full", expected: nil,
            error: "/home/svc/.postgresql/root.crt does not exist"),
        ResolveCase(
            name: "verify-ca with a missing sslrootcert names it",
            url: "postgres://reg@db/fleet?sslmode=verify-ca&sslrootcert=/etc/none.pem", expected: nil,
            error: "/etc/none.pem does not exist"),
        ResolveCase(
            name: "sslrootcert=system with a weaker mode",
            url: "postgres://reg@db/fleet?sslmode=require&sslrootcert=system", expected: nil,
            error: "sslrootcert=system needs sslmode=verify-full"),
        ResolveCase(
            name: "unknown sslmode from the environment", url: "postgres://reg@db/fleet",
            inputs: inputs(env: ["PGSSLMODE": "sometimes"]), expected: nil,
            error: "sslmode (from PGSSLMODE) is not one of disable, allow, prefer, require, verify-ca, verify-full"),
        ResolveCase(
            name: "a port that is not a number", url: "postgres://reg@db/fleet",
            inputs: inputs(env: ["PGPORT": "54x"]), expected: nil, error: "port (from PGPORT) is not a number"),
        ResolveCase(
            name: "a port out of range", url: "postgres://reg@db:70000/fleet", expected: nil,
            error: "port (from the URL) is not a number from 1 to 65535"),
        ResolveCase(
            name: "several hosts", url: "postgres://a,b/fleet", expected: nil, error: "several PostgreSQL hosts"),
        ResolveCase(
            name: "an abstract socket", url: "postgres:///fleet?host=@pg", expected: nil, error: "abstract socket"),
        ResolveCase(
            name: "a socket path too long", url: "postgres:///fleet?host=/" + String(repeating: "d", count: 100),
            expected: nil, error: "longer than 107 bytes"),
        ResolveCase(
            name: "no user anywhere", url: "postgres://db/fleet", inputs: inputs(user: nil), expected: nil,
            error: "no PostgreSQL user: none in the URL, PGUSER is unset"),
        ResolveCase(
            name: "connect_timeout not a number", url: "postgres://reg@db/fleet?connect_timeout=soon", expected: nil,
            error: "connect_timeout (from the URL) is not a whole number"),
    ]

    @Test(arguments: resolveCases)
    func resolve(_ c: ResolveCase) throws {
        if let expected = c.expected {
            let location = try PostgresSettings.resolve(url: c.url, inputs: c.inputs)
            #expect(location == expected)
            if let password = location.password {
                #expect(!location.summary.contains(password) && !location.description.contains(password))
            }
        } else {
            do {
                let location = try PostgresSettings.resolve(url: c.url, inputs: c.inputs)
                Issue.record("accepted: \(location.summary)")
            } catch {
                #expect("\(error)".contains(c.error ?? "?"), "\(error)")
            }
        }
    }

    @Test func summaryNamesWhatIsTriedAndNoPassword() throws {
        let peer = try PostgresSettings.resolve(url: "postgres:///cellprov?host=/run/postgresql", inputs: Self.inputs())
        #expect(
            peer.summary
                == "socket /run/postgresql/.s.PGSQL.5432 (directory from the URL, port by default); "
                + "role \"svc\" (the operating-system user); database \"cellprov\" (from the URL); "
                + "no password (none in the URL, PGPASSWORD unset, no password file /home/svc/.pgpass); "
                + "no TLS on a unix socket")
        let tcp = try PostgresSettings.resolve(
            url: "postgres://reg@db.example/fleet?sslmode=verify-full&sslrootcert=/ca.pem",
            inputs: Self.inputs(
                env: ["PGPASSWORD": "hunter2-secret"], files: ["/ca.pem": .regular(mode: 0o644, contents: nil)]))
        #expect(tcp.password == "hunter2-secret")
        #expect(!tcp.summary.contains("hunter2") && !tcp.description.contains("hunter2"))
        #expect(tcp.summary.contains("password from PGPASSWORD"))
        #expect(
            tcp.summary.contains(
                "sslmode verify-full (from the URL): with TLS, certificate chain checked against /ca.pem and the "
                    + "host name"))
    }

    @Test func errorsCarryNoPassword() {
        for url in [
            "postgres://reg:hunter2@db/fleet?bogus=1", "postgres://reg:hunter2@a,b/fleet",
            "postgres://reg:hunter2@db/a?sslmode=verify-full", "postgres://reg:hunter2@db:99999/fleet",
        ] {
            do {
                _ = try PostgresSettings.resolve(url: url, inputs: Self.inputs())
                Issue.record("accepted \(url)")
            } catch {
                #expect(!"\(error)".contains("hunter2"))
            }
        }
    }
}
