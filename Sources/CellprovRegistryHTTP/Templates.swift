/// The pages' templates (swift-mustache), compiled into the binary as string literals: one installed file, no
/// template directory to deploy or to get out of step with the code. `{{x}}` escapes HTML; `{{{body}}}` is used
/// only for the layout's already-rendered page. No script anywhere: every action is a plain form.
enum Templates {
    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} - cellprov registry</title>
        <style>
        body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
        header { background: #1d2330; color: #fff; padding: .6rem 1rem; display: flex; gap: 1rem; align-items: center; }
        header a { color: #fff; text-decoration: none; }
        header .brand { font-weight: 600; }
        header nav { display: flex; gap: 1rem; align-items: center; flex: 1; }
        header .who { margin-left: auto; opacity: .8; }
        main { padding: 1rem 1.5rem; max-width: 70rem; }
        table { border-collapse: collapse; width: 100%; background: #fff; margin-bottom: 1rem; }
        th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e6eb; vertical-align: top; }
        th { background: #eef0f4; font-weight: 600; }
        code, .id { font-family: ui-monospace, monospace; font-size: .9em; }
        .critical { color: #a1001c; font-weight: 600; }
        .warning { color: #8a5a00; font-weight: 600; }
        td.notice { background: none; padding: .35rem .5rem; border-radius: 0; color: #1f5f8b; }
        th.card, td.card { border-left: 2px solid #c9ced8; }
        .lost { background: #a1001c; color: #fff; padding: .5rem .8rem; border-radius: 4px; }
        .notice { background: #e6f4ea; padding: .5rem .8rem; border-radius: 4px; }
        .error { background: #fde7e9; padding: .5rem .8rem; border-radius: 4px; }
        form.inline { display: inline; }
        input[type=text], input[type=password], textarea { padding: .4rem; font-size: 1rem; }
        #q { width: 28rem; max-width: 90%; }
        button { padding: .35rem .8rem; font-size: .95rem; cursor: pointer; }
        button.danger { background: #a1001c; color: #fff; border: 0; border-radius: 3px; }
        </style>
        </head>
        <body>
        <header>
        <a class="brand" href="/">cellprov registry</a>
        {{#signedIn}}
        <nav>
        <a href="/overview" id="nav-overview">Overview</a>
        <a href="/" id="nav-search">Search</a>
        <a href="/flags" id="nav-flags">Flags</a>
        {{#admin}}<a href="/reconcile" id="nav-reconcile">Carrier reconciliation</a>{{/admin}}
        <span class="who" id="operator">{{operator}} ({{role}})</span>
        <form class="inline" method="post" action="/signout">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button id="signout" type="submit">Sign out</button>
        </form>
        </nav>
        {{/signedIn}}
        </header>
        <main>
        {{{body}}}
        </main>
        </body>
        </html>
        """

    static let signIn = """
        <h1>Sign in</h1>
        {{#error}}<p class="error" id="signin-error">{{error}}</p>{{/error}}
        <p>Sign in with your operator token (<code>cellprov-registry operator add NAME --role viewer|admin</code>).</p>
        <form method="post" action="/signin">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="token">Operator token</label>
        <input type="password" id="token" name="token" autocomplete="off" required>
        <button type="submit" id="signin">Sign in</button>
        </form>
        """

    /// The search box: on the search page and at the top of the overview (where sign-in lands), so that the
    /// two-minute lookup is one step from either.
    static let searchForm = """
        <form method="get" action="/" role="search">
        <input type="text" id="q" name="q" value="{{q}}" autofocus
          placeholder="IMEI, IMSI, ICCID, EID (32 digits), serial, TAC (8 digits) or a log reference">
        <label for="at">at</label>
        <input type="text" id="at" name="at" value="{{at}}" size="26" placeholder="2026-11-03T14:22:00Z (optional)">
        <button type="submit" id="search">Search</button>
        </form>
        """

    static let search = """
        <h1>Find a unit</h1>
        {{> searchForm}}
        <p>Without a moment, every unit that ever reported the IMEI, IMSI, ICCID or EID, current holder first, with
        the intervals it held it. With one (RFC 3339, the device's time), the units that held it at that moment.</p>
        <p><a href="/affected" id="affected-link">Affected units</a>: the units carrying a module model, firmware
        revision or TAC (a vendor's advisory), as a list or CSV.</p>
        {{#error}}<p class="error" id="search-error">{{error}}</p>{{/error}}
        {{#searched}}
        <p id="result-count">{{count}} unit(s) found{{#asOf}} holding it at <span id="as-of">{{asOf}}</span>{{/asOf}}{{#paged}}
        on this page: numbers <span id="result-from">{{from}}</span> to <span id="result-to">{{to}}</span>{{/paged}}.</p>
        {{#hasUnits}}
        <table id="results">
        <tr><th>Serial</th><th>Slots</th>{{#anyHeld}}<th>Held</th>{{/anyHeld}}<th>Last seen</th><th>Open flags</th><th></th></tr>
        {{#units}}
        <tr class="unit-result">
        <td><a class="unit-link" href="/units/{{serialPath}}">{{serial}}</a></td>
        <td>{{#slots}}<div><code>{{slot}}</code> {{imei}}</div>{{/slots}}</td>
        {{#anyHeld}}<td>{{#held}}<div class="held{{#current}} current{{/current}}">{{kind}} <span class="id">{{identifier}}</span>
        in <code>{{slot}}</code>: from <span class="held-from">{{from}}</span>{{#fromReceived}} (received {{fromReceived}}){{/fromReceived}}
        {{#until}}until <span class="held-until">{{until}}</span>{{/until}}{{#untilReceived}} (received {{untilReceived}}){{/untilReceived}}
        {{#current}}<strong class="held-current">until now (current holder)</strong>{{/current}}</div>{{/held}}</td>{{/anyHeld}}
        <td>{{lastSeen}}</td>
        <td>{{openFlags}}</td>
        <td>{{#lost}}<span class="lost">LOST</span>{{/lost}}</td>
        </tr>
        {{/units}}
        </table>
        {{/hasUnits}}
        <p class="pager">{{#previousQuery}}<a id="previous-page" rel="prev" href="/{{previousQuery}}">Previous page</a> {{/previousQuery}}
        {{#nextQuery}}<a id="next-page" rel="next" href="/{{nextQuery}}">Next page</a>{{/nextQuery}}</p>
        {{/searched}}
        """

    static let unit = """
        <h1>Unit <span id="serial">{{serial}}</span></h1>
        {{#asOf}}
        <p class="notice" id="as-of-banner">As of <strong id="as-of">{{asOf}}</strong> (device time): the slots, identities
        and open flags as they stood then, and the timeline up to then. <a id="now-link" href="/units/{{serialPath}}">Now</a></p>
        {{/asOf}}
        <form method="get" action="/units/{{serialPath}}" id="as-of-form">
        <label for="at">As of</label>
        <input type="text" id="at" name="at" value="{{asOf}}" size="26" placeholder="2026-11-03T14:22:00Z">
        <button type="submit" id="show-as-of">Show</button>
        </form>
        {{#newToken}}
        <div class="notice" id="found-notice">
        <p>Unit marked found. Its new device token is shown once; install it on the unit
        (<code>[backend] token_file</code>):</p>
        <p><code id="new-token">{{newToken}}</code></p>
        </div>
        {{/newToken}}
        {{#lostState}}
        <p class="lost" id="lost-banner">Marked lost by {{markedBy}} at {{markedAt}}.{{#note}} Note: {{note}}{{/note}}</p>
        {{/lostState}}
        {{#hasPlaybook}}
        <h2>Lost/stolen playbook</h2>
        <ol id="playbook">{{#playbook}}<li>{{.}}</li>{{/playbook}}</ol>
        {{/hasPlaybook}}
        <p>First seen {{firstSeen}}, last seen {{lastSeen}}.
        {{#admin}}{{^revealed}}<a id="reveal" href="/units/{{serialPath}}?reveal=true{{atQuery}}">Reveal identifiers (audited)</a>{{/revealed}}{{/admin}}
        {{#revealed}}<strong id="revealed">Identifiers revealed; this view is in the audit log.</strong>{{/revealed}}</p>
        {{#admin}}{{^asOf}}
        <div id="admin-actions">
        {{^lost}}
        <form method="post" action="/units/{{serialPath}}/lost">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="lost-note">Note</label> <input type="text" id="lost-note" name="note" maxlength="2000">
        <button class="danger" type="submit" id="mark-lost">Mark lost</button>
        </form>
        {{/lost}}
        {{#lost}}
        <form method="post" action="/units/{{serialPath}}/found">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" id="mark-found">Mark found (issues a new device token)</button>
        </form>
        {{/lost}}
        </div>
        {{/asOf}}{{/admin}}
        <h2>Slots</h2>
        <p>The module (IMEI); the card in use (its EID when it is an eUICC) and the module's active SIM slot; the
        profile enabled on that card (ICCID, IMSI): a profile switch changes only the profile.</p>
        <table id="slots">
        <tr><th>Slot</th><th>Module IMEI</th><th class="card">Card (EID)</th><th>Active SIM slot</th>
        <th class="card">Profile ICCID</th><th>Profile IMSI</th><th>Module</th><th>Last event</th></tr>
        {{#slots}}
        <tr class="slot"><td><code>{{slot}}</code></td><td class="id">{{imei}}</td>
        <td class="id card slot-eid">{{eid}}</td><td class="slot-sim-slot">{{simSlot}}</td>
        <td class="id card">{{iccid}}</td><td class="id">{{imsi}}</td>
        <td>{{manufacturer}} {{model}}</td><td>{{lastEventType}} {{updatedAt}}</td></tr>
        {{/slots}}
        </table>
        <h2>Flags</h2>
        {{^hasFlags}}<p id="no-flags">No flags.</p>{{/hasFlags}}
        {{#hasFlags}}
        <table id="unit-flags">
        <tr><th>Kind</th><th>Severity</th><th>Summary</th><th>Raised</th><th>State</th></tr>
        {{#flags}}
        <tr class="flag" data-kind="{{kind}}"><td><code>{{kind}}</code></td><td class="{{severity}}">{{severity}}</td>
        <td>{{summary}}</td><td>{{raisedAt}}</td><td>{{#open}}open{{/open}}{{^open}}resolved by {{resolvedBy}}{{/open}}</td></tr>
        {{/flags}}
        </table>
        {{/hasFlags}}
        <h2>Timeline</h2>
        <p>Newest first.</p>
        <table id="timeline">
        <tr><th>When</th><th>Origin</th><th>Event</th><th>Slot</th><th>IMEI</th><th class="card">Card (EID)</th>
        <th>SIM slot</th><th class="card">ICCID</th><th>IMSI</th></tr>
        {{#timeline}}
        <tr class="timeline-entry" data-type="{{type}}" data-severity="{{severity}}"{{#rolledBack}} data-rolled-back="true"{{/rolledBack}}><td>{{occurredAt}}</td>
        <td>{{origin}}</td><td class="{{severity}}">{{type}}{{#note}}<br><span class="note">{{note}}</span>{{/note}}</td><td><code>{{slot}}</code></td>
        <td class="id">{{identity.imei}}</td><td class="id card">{{identity.eid}}</td><td>{{identity.simSlot}}</td>
        <td class="id card">{{identity.iccid}}</td><td class="id">{{identity.imsi}}</td></tr>
        {{/timeline}}
        </table>
        <p class="pager">{{#timelinePrevious}}<a id="timeline-previous" rel="prev" href="/units/{{serialPath}}{{timelinePrevious}}">Newer events</a> {{/timelinePrevious}}
        {{#timelineNext}}<a id="timeline-next" rel="next" href="/units/{{serialPath}}{{timelineNext}}">Older events</a>{{/timelineNext}}</p>
        """

    static let flags = """
        <h1>Flags</h1>
        <form method="get" action="/flags" id="flag-filter">
        <label for="kind">Kind</label>
        <select id="kind" name="kind"><option value="">any</option>
        {{#kinds}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/kinds}}</select>
        <label for="severity">Severity</label>
        <select id="severity" name="severity"><option value="">any</option>
        {{#severities}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/severities}}</select>
        <label for="status">Status</label>
        <select id="status" name="status">
        {{#statuses}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/statuses}}</select>
        <button type="submit" id="filter">Show</button>
        {{#filtered}}<a id="clear-filter" href="/flags">Open flags of every kind</a>{{/filtered}}
        </form>
        <p id="filter-text">{{filterText}}, newest first.</p>
        {{#error}}<p class="error" id="flags-error">{{error}}</p>{{/error}}
        {{#message}}<p class="notice" id="message">{{message}}</p>{{/message}}
        {{^hasFlags}}<p id="no-flags">No flags match.</p>{{/hasFlags}}
        {{#hasFlags}}
        <table id="flags">
        <tr><th>Kind</th><th>Severity</th><th>Unit</th><th>Summary</th><th>Raised</th>{{#admin}}<th>Resolve</th>{{/admin}}</tr>
        {{#flags}}
        <tr class="flag" data-kind="{{kind}}" data-severity="{{severity}}" data-open="{{open}}" id="flag-{{id}}">
        <td><code>{{kind}}</code></td><td class="{{severity}}">{{severity}}</td>
        <td>{{#serial}}<a href="/units/{{serialPath}}">{{serial}}</a>{{/serial}}</td>
        <td>{{summary}}</td><td>{{raisedAt}}</td>
        {{#admin}}<td>{{^open}}resolved by {{resolvedBy}}{{/open}}{{#open}}
        <form method="post" action="/flags/{{id}}/resolve">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input type="text" name="note" required maxlength="2000" placeholder="note" aria-label="resolution note">
        <button type="submit" class="resolve">Resolve</button>
        </form>
        {{/open}}</td>{{/admin}}
        </tr>
        {{/flags}}
        </table>
        {{/hasFlags}}
        <p class="pager">{{#previousQuery}}<a id="previous-page" rel="prev" href="/flags{{previousQuery}}">Newer flags</a> {{/previousQuery}}
        {{#nextQuery}}<a id="next-page" rel="next" href="/flags{{nextQuery}}">Older flags</a>{{/nextQuery}}</p>
        """

    static let reconcile = """
        <h1>Carrier reconciliation</h1>
        <p>Paste a carrier or IoT-connectivity portal export (CSV with an ICCID column; IMSI and status columns are
        used when present). Findings become flags.</p>
        {{#error}}<p class="error" id="reconcile-error">{{error}}</p>{{/error}}
        {{#hasReport}}
        <h2>Report</h2>
        <table id="report">
        {{#summary}}<tr><th>{{label}}</th><td>{{value}}</td></tr>{{/summary}}
        </table>
        <h2>Flags raised ({{raisedCount}})</h2>
        <table>
        {{#raised}}<tr class="flag" data-kind="{{kind}}"><td><code>{{kind}}</code></td><td>{{summary}}</td></tr>{{/raised}}
        </table>
        {{/hasReport}}
        <form method="post" action="/reconcile">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <textarea id="csv" name="csv" rows="14" cols="100" required></textarea><br>
        <button type="submit" id="reconcile">Reconcile</button>
        </form>
        """

    static let affected = """
        <h1>Affected units</h1>
        <form method="get" action="/affected" id="affected-form">
        <p>The units whose current module matches every field given (exact, case-sensitive; a prefix needs at least 3
        characters), optionally only those seen since a moment.</p>
        <table>
        <tr><th><label for="manufacturer">Manufacturer</label></th>
        <td><input type="text" id="manufacturer" name="manufacturer" value="{{manufacturer}}" maxlength="64"></td>
        <th><label for="manufacturer_prefix">or starting with</label></th>
        <td><input type="text" id="manufacturer_prefix" name="manufacturer_prefix" value="{{manufacturer_prefix}}" maxlength="64"></td></tr>
        <tr><th><label for="model">Model</label></th>
        <td><input type="text" id="model" name="model" value="{{model}}" maxlength="64"></td>
        <th><label for="model_prefix">or starting with</label></th>
        <td><input type="text" id="model_prefix" name="model_prefix" value="{{model_prefix}}" maxlength="64"></td></tr>
        <tr><th><label for="revision">Firmware revision</label></th>
        <td><input type="text" id="revision" name="revision" value="{{revision}}" maxlength="64"></td>
        <th><label for="revision_prefix">or starting with</label></th>
        <td><input type="text" id="revision_prefix" name="revision_prefix" value="{{revision_prefix}}" maxlength="64"></td></tr>
        <tr><th><label for="tac">TAC (8 digits)</label></th>
        <td><input type="text" id="tac" name="tac" value="{{tac}}" maxlength="8"></td>
        <th><label for="seen_since">Seen since</label></th>
        <td><input type="text" id="seen_since" name="seen_since" value="{{seen_since}}" placeholder="2026-11-01T00:00:00Z (optional)"></td></tr>
        </table>
        <button type="submit" id="affected-search">Find units</button>
        </form>
        {{#error}}<p class="error" id="affected-error">{{error}}</p>{{/error}}
        {{#searched}}
        <p id="affected-count">{{count}} unit(s) from number {{from}}.
        <a id="affected-csv" href="/affected.csv{{csvQuery}}">CSV</a>
        {{#admin}}{{^revealed}}<a id="reveal" href="/affected{{revealQuery}}">Reveal identifiers (audited)</a>{{/revealed}}{{/admin}}
        {{#revealed}}<strong id="revealed">Identifiers revealed; this view is in the audit log.</strong>{{/revealed}}</p>
        {{#hasUnits}}
        <table id="affected-results">
        <tr><th>Serial</th><th>Slot</th><th>Manufacturer</th><th>Model</th><th>Revision</th><th>IMEI</th><th>IMSI</th><th>ICCID</th><th>Last seen</th><th></th></tr>
        {{#rows}}
        <tr class="affected-row">
        <td><a class="unit-link" href="/units/{{serialPath}}">{{serial}}</a></td>
        <td><code>{{slot}}</code></td><td>{{manufacturer}}</td><td>{{model}}</td><td><code>{{revision}}</code></td>
        <td class="id">{{imei}}</td><td class="id">{{imsi}}</td><td class="id">{{iccid}}</td><td>{{lastSeen}}</td>
        <td>{{#lost}}<span class="lost">LOST</span>{{/lost}}</td>
        </tr>
        {{/rows}}
        </table>
        {{/hasUnits}}
        {{#nextQuery}}<p><a id="affected-next" href="/affected{{nextQuery}}">Next page</a></p>{{/nextQuery}}
        {{/searched}}
        """
    static let message = """
        <h1>{{title}}</h1>
        <p class="{{kind}}" id="message">{{message}}</p>
        <p><a href="{{back}}">Back</a></p>
        """
}
