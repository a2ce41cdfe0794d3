/// The `/overview` page's templates (OverviewPage.swift), in the layout of ``Templates/layout``: the page and its
/// bar chart (inline SVG, drawn from ``OverviewCharts``' values). Every value is escaped by `{{x}}`.
enum OverviewTemplates {
    static let overview = """
        {{> searchForm}}
        <h1>Fleet overview</h1>
        <p class="as-of">As of <time id="as-of" datetime="{{asOf}}">{{asOf}}</time>: the counts are read at most twice a
        minute and shown for up to 15 minutes while a newer read runs.</p>
        <style>
        .tiles { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
        .tile { background: #fff; border: 1px solid #e3e6eb; border-radius: 4px; padding: .6rem 1rem; min-width: 9rem; }
        .tile .n { font-size: 1.8rem; font-weight: 600; display: block; }
        .chart { background: #fff; border: 1px solid #e3e6eb; border-radius: 4px; padding: .5rem; margin-bottom: 1rem; }
        td.num, th.num { text-align: right; }
        </style>
        <section class="tiles" id="units">
        <div class="tile"><span class="n" id="units-total">{{total}}</span>units</div>
        <div class="tile"><span class="n" id="units-seen">{{seen24h}}</span>seen in the last 24 h</div>
        <div class="tile"><a class="n" id="units-silent" href="{{silentHref}}">{{silent}}</a>silent</div>
        <div class="tile"><span class="n" id="units-lost">{{lost}}</span>marked lost</div>
        </section>
        <h2>Open flags</h2>
        {{#hasFlags}}
        <table id="open-flags">
        <tr><th>Kind</th><th class="num">Open</th><th>By severity</th></tr>
        {{#flags}}
        <tr><td><a href="{{href}}" class="flag-kind">{{kind}}</a></td>
        <td class="num"><a href="{{href}}" class="flag-count" data-kind="{{kind}}">{{count}}</a></td>
        <td>{{#severities}}<span class="{{severity}}">{{severity}} {{count}}</span> {{/severities}}</td></tr>
        {{/flags}}
        </table>
        {{/hasFlags}}
        {{^hasFlags}}<p class="notice" id="no-open-flags">No open flag.</p>{{/hasFlags}}
        <h2>Events per day</h2>
        <p>Events the registry received each UTC day, the last {{days}} days ({{eventsTotal}} in total).</p>
        <div class="chart">{{#eventsChart}}{{> barChart}}{{/eventsChart}}</div>
        <h2>SIM swaps and profile switches per week</h2>
        <p>The last {{weeks}} ISO weeks (Monday to Sunday, UTC): {{swapsTotal}} SIM swap(s) (<code>sim_changed</code>),
        {{switchesTotal}} profile switch(es) (<code>profile_switched</code>).</p>
        <div class="chart">{{#swapsChart}}{{> barChart}}{{/swapsChart}}</div>
        <h2>Firmware inventory</h2>
        <p>The modules of the units' current field slots by manufacturer, model and firmware revision; each row lists
        its units on the affected-units page.</p>
        {{#hasFirmware}}
        <table id="firmware">
        <tr><th>Manufacturer</th><th>Model</th><th>Revision</th><th class="num">Units</th></tr>
        {{#firmware}}
        <tr><td>{{manufacturer}}</td><td>{{model}}</td><td><code>{{revision}}</code></td>
        <td class="num">{{#href}}<a href="{{href}}" class="firmware-units">{{units}}</a>{{/href}}{{^href}}{{units}}{{/href}}</td></tr>
        {{/firmware}}
        </table>
        {{#firmwareTruncated}}<p class="notice" id="firmware-truncated">The {{firmwareLimit}} rows with the most units
        are shown.</p>{{/firmwareTruncated}}
        {{/hasFirmware}}
        {{^hasFirmware}}<p class="notice" id="no-firmware">No unit has reported a module yet.</p>{{/hasFirmware}}
        """

    /// One bar chart (``OverviewCharts``): the frame and its y-axis grid, the bars with a `<title>` each (shown on
    /// hover without script) and a `data-` attribute naming their day or week, the x-axis labels, an optional legend.
    static let barChart = """
        <svg id="{{id}}" role="img" aria-label="{{label}}" viewBox="0 0 {{width}} {{height}}" width="100%" \
        preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" \
        font-size="11"><rect x="0" y="0" width="{{width}}" height="{{height}}" fill="#fff"/>
        {{#grid}}<line x1="{{x1}}" y1="{{y}}" x2="{{x2}}" y2="{{y}}" stroke="#e3e6eb"/>\
        <text x="{{tx}}" y="{{ty}}" text-anchor="end" fill="#555">{{value}}</text>
        {{/grid}}
        {{#bars}}<rect class="{{cls}}" x="{{x}}" y="{{y}}" width="{{w}}" height="{{h}}" fill="{{fill}}" \
        data-{{dataName}}="{{dataValue}}" data-count="{{count}}"><title>{{title}}</title></rect>
        {{/bars}}
        {{#labels}}<text x="{{x}}" y="{{labelY}}" text-anchor="middle" fill="#555">{{text}}</text>
        {{/labels}}
        {{#legend}}<rect x="{{x}}" y="4" width="10" height="10" fill="{{fill}}"/>\
        <text x="{{tx}}" y="13" fill="#333">{{text}}</text>
        {{/legend}}
        </svg>
        """
}
