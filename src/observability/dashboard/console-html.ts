/**
 * The admin console's tabs (everything except the Overview, which is the live view in
 * dashboard-page.ts). Static markup only: forms and empty containers the console script fills with
 * textContent. Elements marked `data-write="<resource>"` are shown only when GET /api/me says the
 * logged-in role may write that resource (the API stays the judge).
 */

export const CONSOLE_TABS_HTML = `<nav id="tabs" class="tabs" aria-label="Console sections">
    <button type="button" class="tab active" data-tab="overview">Overview</button>
    <button type="button" class="tab" data-tab="keys" hidden>Keys</button>
    <button type="button" class="tab" data-tab="providers" hidden>Providers</button>
    <button type="button" class="tab" data-tab="routes" hidden>Routes</button>
    <button type="button" class="tab" data-tab="budgets" hidden>Budgets</button>
    <button type="button" class="tab" data-tab="requests" hidden>Requests</button>
    <span id="whoami" class="whoami"></span>
  </nav>`;

export const CONSOLE_PANELS_HTML = `<div id="tab-keys" class="tab-panel" hidden>
    <section class="panel form-panel" data-write="api_keys">
      <h2>Create a client API key <span class="hint">POST /api/admin/users/{id}/keys</span></h2>
      <form id="key-form" class="form-grid" autocomplete="off" novalidate>
        <label>User<select id="key-user" required></select></label>
        <label>Name<input id="key-name" maxlength="100" placeholder="ci-pipeline" required></label>
        <label>Role<select id="key-role"><option value="">the user's role (default)</option><option>admin</option><option>developer</option><option>user</option><option>viewer</option></select></label>
        <label>RPM limit<input id="key-rpm" type="number" min="1" step="1" placeholder="gateway default"></label>
        <label>TPM limit<input id="key-tpm" type="number" min="1" step="1" placeholder="unlimited"></label>
        <label>Allowed models<input id="key-models" placeholder="all (or: gpt-4o-mini, meta-llama/*)"></label>
        <label>Budget USD<input id="key-budget-usd" type="number" min="0" step="any" placeholder="none"></label>
        <label>Budget period<select id="key-budget-period"><option value="day">day</option><option value="week">week</option><option value="month" selected>month</option><option value="total">total</option></select></label>
        <label class="inline" id="key-capture-label"><input type="checkbox" id="key-capture"> capture request bodies (admins)</label>
        <div class="form-actions"><button type="submit" id="key-submit">Create key</button></div>
      </form>
      <p id="key-form-error" class="error" role="alert"></p>
      <div id="key-created" class="secret-box" hidden>
        <p class="secret-note"><strong>Copy this key now: it is shown only now.</strong> Floodgate keeps only its hash; nobody can show it again.</p>
        <div class="secret-row"><input id="key-created-value" readonly spellcheck="false"><button type="button" id="key-copy">Copy</button><button type="button" id="key-created-done" class="secondary">Done, hide it</button></div>
        <p id="key-copy-status" class="muted"></p>
      </div>
      <p class="note">To change a key's name, limits, allowed models or budget later, use Edit on its row (PATCH /api/admin/api-keys/{id}): it applies at once on every instance, and the key itself stays the same. Users' and teams' budgets are edited under Budgets.</p>
    </section>
    <section class="panel">
      <h2>Client API keys <span class="hint">GET /api/admin/api-keys</span>
        <label class="inline"><input type="checkbox" id="keys-revoked"> include revoked</label>
        <button type="button" class="secondary small" id="keys-refresh">Refresh</button></h2>
      <p id="keys-scope" class="note"></p>
      <p id="keys-error" class="error" role="alert"></p>
      <div id="keys-list"></div>
    </section>
  </div>

  <div id="tab-providers" class="tab-panel" hidden>
    <section class="panel form-panel" data-write="providers">
      <h2>Add a provider <span class="hint">POST /api/admin/providers</span></h2>
      <form id="provider-form" class="form-grid" autocomplete="off" novalidate>
        <label>Name<input id="provider-name" maxlength="100" placeholder="openai" required></label>
        <label class="wide">Base URL<input id="provider-url" required></label>
        <label class="wide">Models<input id="provider-models" placeholder="gpt-4o-mini, text-embedding-*"></label>
        <label>Kind<select id="provider-kind"><option value="openai">openai</option><option value="anthropic">anthropic</option></select></label>
        <label>RPM<input id="provider-rpm" type="number" min="1" step="1" placeholder="unlimited"></label>
        <div class="form-actions"><button type="submit" id="provider-submit">Add provider</button></div>
      </form>
      <p id="provider-form-error" class="error" role="alert"></p>
    </section>
    <p id="providers-error" class="error" role="alert"></p>
    <div id="providers-list"></div>
  </div>

  <div id="tab-routes" class="tab-panel" hidden>
    <section class="panel form-panel" data-write="providers">
      <h2 id="route-form-title">Create a route <span class="hint">model alias → provider targets (docs/routes.md)</span></h2>
      <form id="route-form" autocomplete="off" novalidate>
        <div class="form-grid">
          <label>Model alias<input id="route-model" placeholder="chat-default" required></label>
          <label>Max attempts<input id="route-attempts" type="number" min="1" step="1" placeholder="3"></label>
          <label class="inline"><input type="checkbox" id="route-enabled" checked> enabled</label>
        </div>
        <table class="targets"><thead><tr><th>provider</th><th>model</th><th>weight</th><th>tier</th><th></th></tr></thead><tbody id="route-targets"></tbody></table>
        <div class="form-actions">
          <button type="button" class="secondary small" id="route-add-target">+ target</button>
          <button type="submit" id="route-submit">Create route</button>
          <button type="button" class="secondary" id="route-cancel" hidden>Cancel edit</button>
        </div>
      </form>
      <p id="route-form-error" class="error" role="alert"></p>
    </section>
    <section class="panel">
      <h2>Routes <span class="hint">GET /api/admin/routes</span></h2>
      <p id="routes-error" class="error" role="alert"></p>
      <div id="routes-list"></div>
    </section>
  </div>

  <div id="tab-budgets" class="tab-panel" hidden>
    <p class="note">Budgets (docs/spend.md): USD per UTC day, ISO week, month or in total; the tightest of key, user and team applies. A client key's budget is edited on its row under Keys (Edit).</p>
    <section class="panel">
      <h2>Users <span class="hint">PATCH /api/admin/users/{id} {budget}</span></h2>
      <p id="budget-users-error" class="error" role="alert"></p>
      <div id="budget-users"></div>
    </section>
    <section class="panel">
      <h2>Teams <span class="hint">PATCH /api/admin/teams/{id} {budget}</span></h2>
      <p id="budget-teams-error" class="error" role="alert"></p>
      <div id="budget-teams"></div>
    </section>
  </div>

  <div id="tab-requests" class="tab-panel" hidden>
    <section class="panel">
      <h2>Requests <span class="hint">GET /api/admin/requests</span></h2>
      <form id="requests-form" class="form-grid" autocomplete="off" novalidate>
        <label>Model<input id="rq-model" placeholder="any"></label>
        <label>Endpoint<select id="rq-endpoint"><option value="">any</option><option value="chat">chat</option><option value="completions">completions</option><option value="embeddings">embeddings</option><option value="responses">responses</option><option value="messages">messages</option></select></label>
        <label>Provider<select id="rq-provider"><option value="">any</option></select></label>
        <label>Status<input id="rq-status" placeholder="any (200, 429, 5xx…)"></label>
        <label>Key id<input id="rq-key" placeholder="uuid"></label>
        <label>User id<input id="rq-user" placeholder="uuid"></label>
        <label>Team id<input id="rq-team" placeholder="uuid"></label>
        <label>From<input id="rq-from" type="datetime-local"></label>
        <label>To<input id="rq-to" type="datetime-local"></label>
        <label>Rows per page<select id="rq-limit"><option>10</option><option selected>50</option><option>200</option></select></label>
        <div class="form-actions"><button type="submit" id="rq-submit">Search</button></div>
      </form>
      <p id="requests-error" class="error" role="alert"></p>
      <div class="requests-layout">
        <div id="requests-list"></div>
        <aside id="request-detail" class="detail" hidden></aside>
      </div>
      <div class="form-actions"><button type="button" class="secondary" id="rq-more" hidden>Load more</button></div>
    </section>
  </div>`;
