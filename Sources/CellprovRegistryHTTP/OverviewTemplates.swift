/// The `/overview` page's template (OverviewPage.swift), in the layout of ``Templates/layout``. The charts arrive
/// rendered (``OverviewCharts``, numbers and dates only); everything else is escaped by `{{x}}`.
enum OverviewTemplates {
    static let overview = """
        <h1>Fleet overview</h1>
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
        <div class="chart">{{{eventsChart}}}</div>
        <h2>SIM swaps and profile switches per week</h2>
        <p>The last {{weeks}} ISO weeks (Monday to Sunday, UTC): {{swapsTotal}} SIM swap(s) (<code>sim_changed</code>),
        {{switchesTotal}} profile switch(es) (<code>profile_switched</code>).</p>
        <div class="chart">{{{swapsChart}}}</div>
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
}
