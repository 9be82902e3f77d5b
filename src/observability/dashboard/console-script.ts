/**
 * The admin console script (served as /dashboard/assets/console.js under the page's strict CSP):
 * tabs, and write actions on the existing admin API with the key the user logged in with. Every
 * text from the API is written with textContent. Role checks here only hide what the role cannot
 * do (from GET /api/me's `permissions`); the API is the judge, and its `error.message` and
 * `error.param` are shown when it refuses.
 *
 * Plain ES5-style browser script (no template literals: this file is itself one).
 */
export const CONSOLE_JS = String.raw`(function () {
  'use strict';
  var KEY_STORAGE = 'floodgate.adminKey';
  var TABS = ['overview', 'keys', 'providers', 'routes', 'budgets', 'requests'];
  var PERIODS = ['day', 'week', 'month', 'total'];
  var st = {
    key: null,
    me: null,
    perms: {},
    tab: 'overview',
    users: [],
    teams: [],
    providers: [],
    routes: [],
    editingRoute: null,
    requestsCursor: null,
    requestsQuery: ''
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function button(text, className, onClick) {
    var b = el('button', className, text);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }
  function table(headers) {
    var t = el('table');
    var head = el('tr');
    headers.forEach(function (h) { head.appendChild(el('th', null, h)); });
    t.appendChild(head);
    return t;
  }
  function td(tr, text, className) { var c = el('td', className, text === null || text === undefined ? '—' : text); tr.appendChild(c); return c; }
  function when(iso) { return iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '—'; }
  function short(id) { return id ? String(id).slice(0, 8) : '—'; }
  function usd(n) { return typeof n === 'number' ? '$' + n.toLocaleString('en-US', { maximumFractionDigits: 6 }) : '—'; }
  function budgetText(b) { return b ? usd(b.limit_usd) + ' / ' + b.period : 'none'; }
  function emptyBox(text) { return el('div', 'empty', text); }

  // ---- permissions (from GET /api/me; only to hide what the role cannot do) -------------------
  function canRead(resource) { var p = st.perms[resource]; return !!p && p.read === 'any'; }
  function canWrite(resource) { var p = st.perms[resource]; return !!p && p.write === 'any'; }
  // A team_admin (GET /api/me team_admin_of / team_permissions) manages its own team's client keys:
  // the API lists only that team's keys to it and refuses another team's (403).
  function teamAdminTeam() { return st.me && st.me.team_admin_of && st.me.team_admin_of.length ? st.me.team_admin_of[0] : null; }
  function teamCan(resource, action) {
    var p = st.me && st.me.team_permissions ? st.me.team_permissions[resource] : null;
    return resource === 'api_keys' && !!teamAdminTeam() && !!p && p[action] === 'team';
  }
  function mayRead(resource) { return canRead(resource) || teamCan(resource, 'read'); }
  function mayWrite(resource) { return canWrite(resource) || teamCan(resource, 'write'); }
  function gate(root) {
    var nodes = (root || document).querySelectorAll('[data-write]');
    for (var i = 0; i < nodes.length; i++) nodes[i].hidden = !mayWrite(nodes[i].dataset.write);
  }

  // ---- API calls ------------------------------------------------------------------------------
  function ApiFailure(status, message, param) { this.status = status; this.message = message; this.param = param || null; }
  function failureText(err) {
    if (!err) return 'request failed';
    if (err instanceof ApiFailure) return err.message + (err.param ? ' (field: ' + err.param + ')' : '');
    return 'cannot reach the gateway: ' + (err.message || String(err));
  }
  function api(method, path, body) {
    var headers = { authorization: 'Bearer ' + st.key };
    var init = { method: method, headers: headers, cache: 'no-store' };
    if (body !== undefined) { headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      if (res.status === 204) return null;
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var e = data && data.error ? data.error : null;
          throw new ApiFailure(res.status, e && e.message ? e.message : 'HTTP ' + res.status, e ? e.param : null);
        }
        return data;
      });
    });
  }
  function showError(id, err) { $(id).textContent = err ? failureText(err) : ''; }
  function listOf(body) { return Array.isArray(body) ? body : body && Array.isArray(body.data) ? body.data : []; }
  function intOrNull(id) {
    var v = $(id).value.trim();
    if (v === '') return null;
    var n = Number(v);
    if (!/^\d+$/.test(v) || n < 1) throw new ApiFailure(0, 'must be a whole number of at least 1', id.replace(/^[a-z]+-/, ''));
    return n;
  }
  function words(value) { return value.split(/[\s,]+/).filter(function (w) { return w.length > 0; }); }

  // ---- login / tabs ---------------------------------------------------------------------------
  document.addEventListener('floodgate:login', function () {
    var key = sessionStorage.getItem(KEY_STORAGE);
    if (key === st.key && st.me) return;
    st.key = key;
    api('GET', 'api/me').then(function (me) {
      st.me = me;
      st.perms = me.permissions || {};
      $('whoami').textContent = (me.email || me.name || short(me.id)) + ' · ' + me.role + (me.api_key ? ' key ' + me.api_key.masked : '');
      setTabVisible('keys', mayRead('api_keys'));
      // capture_bodies is for admins only (the API answers 403 naming it for anyone else)
      $('key-capture-label').hidden = !canWrite('api_keys');
      $('keys-scope').textContent = canRead('api_keys') ? '' : 'Your team\'s keys (you are its team_admin).';
      setTabVisible('providers', canRead('providers'));
      setTabVisible('routes', canRead('providers'));
      setTabVisible('budgets', canRead('users') || canRead('teams'));
      setTabVisible('requests', true);
      gate();
      var wanted = (location.hash || '').replace('#', '');
      selectTab(TABS.indexOf(wanted) >= 0 && !tabButton(wanted).hidden ? wanted : st.tab);
    }).catch(function (err) {
      $('whoami').textContent = 'GET /api/me failed: ' + failureText(err);
    });
  });
  document.addEventListener('floodgate:logout', function () {
    st.key = null;
    st.me = null;
    st.perms = {};
    TABS.slice(1).forEach(function (t) { setTabVisible(t, false); });
    selectTab('overview');
    $('key-created-value').value = '';
    $('key-copy-status').textContent = '';
    $('key-created').hidden = true;
    // Nothing read with the previous key stays in the page for the next login.
    ['keys-list', 'keys-scope', 'providers-list', 'routes-list', 'budget-users', 'budget-teams', 'requests-list', 'key-user', 'whoami'].forEach(function (id) { $(id).textContent = ''; });
    ['key-form-error', 'keys-error', 'provider-form-error', 'providers-error', 'route-form-error', 'routes-error', 'budget-users-error', 'budget-teams-error', 'requests-error'].forEach(function (id) { $(id).textContent = ''; });
    st.users = [];
    st.teams = [];
    st.providers = [];
    st.routes = [];
    st.editingRoute = null;
    closeDetail();
    $('rq-more').hidden = true;
    gate();
  });

  function tabButton(name) { return document.querySelector('.tab[data-tab="' + name + '"]'); }
  function setTabVisible(name, visible) { tabButton(name).hidden = !visible; }
  function selectTab(name) {
    st.tab = name;
    TABS.forEach(function (t) {
      tabButton(t).classList.toggle('active', t === name);
      var panel = $(t === 'overview' ? 'tab-overview' : 'tab-' + t);
      panel.hidden = t !== name;
    });
    if (history.replaceState) history.replaceState(null, '', name === 'overview' ? location.pathname : '#' + name);
    // Each visit reloads the tab: what another admin (or tab) changed shows up.
    if (name !== 'overview' && st.me) LOADERS[name]();
  }
  var tabs = document.querySelectorAll('.tab');
  for (var i = 0; i < tabs.length; i++) {
    tabs[i].addEventListener('click', function (event) { selectTab(event.currentTarget.dataset.tab); });
  }

  var LOADERS = {
    keys: function () { loadUsersForKeys(); loadKeys(); },
    providers: loadProviders,
    routes: function () {
      loadProviderNames().then(function () {
        if (!st.editingRoute) resetRouteForm();
        return loadRoutes();
      });
    },
    budgets: loadBudgets,
    requests: function () { loadProviderNames().then(fillProviderFilter); searchRequests(); }
  };

  // ---- client API keys ------------------------------------------------------------------------
  function userLabel(u) { return (u.email || u.name || short(u.id)) + ' (' + u.role + (u.disabled ? ', disabled' : '') + ')'; }
  function loadUsers() {
    return api('GET', 'api/admin/users?limit=500').then(function (body) { st.users = listOf(body); return st.users; });
  }
  /** A team_admin may not list users: its team's members (GET /api/admin/teams/{id}) instead. */
  function loadTeamMembers(teamId) {
    return api('GET', 'api/admin/teams/' + encodeURIComponent(teamId)).then(function (team) {
      st.users = (team && Array.isArray(team.members) ? team.members : []).map(function (m) {
        return { id: m.user_id, email: m.email, name: m.name, role: m.user_role, disabled: false };
      });
      return st.users;
    });
  }
  function loadUsersForKeys() {
    if (!mayWrite('api_keys')) return;
    var select = $('key-user');
    (canWrite('api_keys') || !teamAdminTeam() ? loadUsers() : loadTeamMembers(teamAdminTeam())).then(function (users) {
      select.textContent = '';
      users.forEach(function (u) {
        var o = el('option', null, userLabel(u));
        o.value = u.id;
        select.appendChild(o);
      });
    }).catch(function (err) { showError('key-form-error', err); });
  }

  function loadKeys() {
    showError('keys-error', null);
    var qs = $('keys-revoked').checked ? '&include_revoked=true' : '';
    return api('GET', 'api/admin/api-keys?limit=500' + qs).then(function (body) {
      renderKeys(listOf(body));
    }).catch(function (err) { showError('keys-error', err); });
  }
  $('keys-refresh').addEventListener('click', loadKeys);
  $('keys-revoked').addEventListener('change', loadKeys);

  function ownerText(id) {
    for (var i = 0; i < st.users.length; i++) if (st.users[i].id === id) return st.users[i].email || st.users[i].name || short(id);
    return short(id);
  }

  function renderKeys(keys) {
    var box = $('keys-list');
    box.textContent = '';
    if (keys.length === 0) { box.appendChild(emptyBox('No client API keys.')); return; }
    var t = table(['name', 'key', 'owner', 'role', 'rpm / tpm', 'budget', 'last used', 'created', 'state', '']);
    t.id = 'keys-table';
    keys.forEach(function (k) {
      var tr = el('tr');
      tr.dataset.id = k.id;
      tr.dataset.name = k.name;
      td(tr, k.name, 'label-cell');
      td(tr, k.masked);
      td(tr, ownerText(k.owner_id), 'label-cell');
      td(tr, k.role);
      td(tr, (k.limits.rpm === null ? 'default' : k.limits.rpm) + ' / ' + (k.limits.tpm === null ? '∞' : k.limits.tpm));
      td(tr, budgetText(k.budget));
      td(tr, when(k.last_used_at));
      td(tr, when(k.created_at));
      var stateCell = el('td');
      stateCell.appendChild(el('span', 'badge ' + (k.revoked_at ? 'disabled' : 'active'), k.revoked_at ? 'revoked' : 'active'));
      tr.appendChild(stateCell);
      var actions = el('td');
      if (!k.revoked_at) {
        var edit = button('Edit', 'secondary small', function () { openKeyEditor(tr, k); });
        edit.dataset.write = 'api_keys';
        edit.dataset.role = 'key-edit';
        actions.appendChild(edit);
        var revoke = button('Revoke', 'danger small', function () { revokeKey(k); });
        revoke.dataset.write = 'api_keys';
        revoke.dataset.role = 'revoke';
        actions.appendChild(revoke);
      }
      tr.appendChild(actions);
      t.appendChild(tr);
    });
    var scroll = el('div', 'table-scroll');
    scroll.appendChild(t);
    box.appendChild(scroll);
    gate(box);
  }

  /** A whole number of at least 1, or null when empty (field: the API's name for it). */
  function wholeOrNull(value, field) {
    var v = String(value).trim();
    if (v === '') return null;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new ApiFailure(0, 'must be a whole number of at least 1', field);
    return Number(v);
  }
  function labelled(text, input) { var l = el('label', null, text); l.appendChild(input); return l; }
  function input(field, value, placeholder, type) {
    var i = el('input');
    if (type) i.type = type;
    i.dataset.field = field;
    i.placeholder = placeholder || '';
    i.value = value === null || value === undefined ? '' : String(value);
    return i;
  }

  // Edits a key in place (PATCH /api/admin/api-keys/{id}); only the fields that changed are sent.
  function openKeyEditor(tr, k) {
    var next = tr.nextSibling;
    if (next && next.classList && next.classList.contains('key-editor')) { next.remove(); return; }
    var editor = el('tr', 'key-editor');
    editor.dataset.id = k.id;
    var cell = el('td');
    cell.colSpan = tr.children.length;
    var form = el('form', 'inline-form');
    form.noValidate = true;
    var name = input('name', k.name, 'name');
    name.maxLength = 100;
    var rpm = input('rpm', k.limits.rpm, 'gateway default', 'number');
    var tpm = input('tpm', k.limits.tpm, 'unlimited', 'number');
    var models = input('allowed_models', (k.allowed_models || []).join(', '), 'all models');
    var amount = input('limit_usd', k.budget ? k.budget.limit_usd : '', 'no budget', 'number');
    amount.step = 'any';
    amount.min = '0';
    var period = el('select');
    period.dataset.field = 'period';
    PERIODS.forEach(function (p) { var o = el('option', null, p); o.value = p; period.appendChild(o); });
    period.value = k.budget ? k.budget.period : 'month';
    var save = el('button', null, 'Save');
    save.type = 'submit';
    var cancel = button('Cancel', 'secondary small', function () { editor.remove(); });
    [labelled('Name', name), labelled('RPM', rpm), labelled('TPM', tpm), labelled('Allowed models', models),
      labelled('Budget USD', amount), labelled('Budget period', period)].forEach(function (l) { form.appendChild(l); });
    form.appendChild(save);
    form.appendChild(cancel);
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      showError('keys-error', null);
      var body = {};
      try {
        var newName = name.value.trim();
        if (!newName) throw new ApiFailure(0, 'a name is required', 'name');
        if (newName !== k.name) body.name = newName;
        var r = wholeOrNull(rpm.value, 'limits.rpm'), t = wholeOrNull(tpm.value, 'limits.tpm');
        if (r !== k.limits.rpm || t !== k.limits.tpm) body.limits = { rpm: r, tpm: t };
        var list = words(models.value);
        var newModels = list.length ? list : null;
        if ((newModels || []).join(',') !== (k.allowed_models || []).join(',') || (newModels === null) !== (k.allowed_models === null)) body.allowed_models = newModels;
        var budget = null;
        if (amount.value.trim() !== '') {
          var n = Number(amount.value);
          if (!(n > 0)) throw new ApiFailure(0, 'the budget must be a positive amount of USD', 'budget.limit_usd');
          budget = { limit_usd: n, period: period.value };
        }
        var was = k.budget ? k.budget.limit_usd + '/' + k.budget.period : '';
        if ((budget ? budget.limit_usd + '/' + budget.period : '') !== was) body.budget = budget;
      } catch (err) { showError('keys-error', err); return; }
      if (Object.keys(body).length === 0) { editor.remove(); return; }
      save.disabled = true;
      api('PATCH', 'api/admin/api-keys/' + encodeURIComponent(k.id), body).then(loadKeys)
        .catch(function (err) { showError('keys-error', err); save.disabled = false; });
    });
    cell.appendChild(form);
    editor.appendChild(cell);
    tr.parentNode.insertBefore(editor, tr.nextSibling);
    name.focus();
  }

  function revokeKey(k) {
    if (!window.confirm('Revoke the key "' + k.name + '" (' + k.masked + ')? Every client using it gets 401 from now on. This cannot be undone.')) return;
    api('DELETE', 'api/admin/api-keys/' + encodeURIComponent(k.id)).then(loadKeys).catch(function (err) { showError('keys-error', err); });
  }

  $('key-form').addEventListener('submit', function (event) {
    event.preventDefault();
    showError('key-form-error', null);
    var body;
    try {
      var userId = $('key-user').value;
      if (!userId) throw new ApiFailure(0, 'pick a user', 'user');
      var name = $('key-name').value.trim();
      if (!name) throw new ApiFailure(0, 'a name is required', 'name');
      body = { name: name };
      if ($('key-role').value) body.role = $('key-role').value;
      var rpm = intOrNull('key-rpm'), tpm = intOrNull('key-tpm');
      if (rpm !== null || tpm !== null) body.limits = { rpm: rpm, tpm: tpm };
      var models = words($('key-models').value);
      if (models.length) body.allowed_models = models;
      // Sent only when ticked, so the form works on gateways without body capture.
      if ($('key-capture').checked) body.capture_bodies = true;
      var usdValue = $('key-budget-usd').value.trim();
      if (usdValue !== '') {
        var limit = Number(usdValue);
        if (!(limit > 0)) throw new ApiFailure(0, 'the budget must be a positive amount of USD', 'budget.limit_usd');
        body.budget = { limit_usd: limit, period: $('key-budget-period').value };
      }
    } catch (err) { showError('key-form-error', err); return; }
    $('key-submit').disabled = true;
    api('POST', 'api/admin/users/' + encodeURIComponent(userId) + '/keys', body).then(function (created) {
      $('key-created-value').value = created.key;
      $('key-copy-status').textContent = 'Key "' + created.name + '" (' + created.masked + ') for ' + ownerText(created.owner_id) + '.';
      $('key-created').hidden = false;
      $('key-name').value = '';
      $('key-capture').checked = false;
      return loadKeys();
    }).catch(function (err) { showError('key-form-error', err); })
      .then(function () { $('key-submit').disabled = false; });
  });
  $('key-copy').addEventListener('click', function () {
    var input = $('key-created-value');
    function done(ok) { $('key-copy-status').textContent = ok ? 'Copied to the clipboard.' : 'Select the key and copy it (Ctrl+C).'; }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { input.select(); done(false); });
    } else { input.select(); done(false); }
  });
  $('key-created-done').addEventListener('click', function () {
    $('key-created-value').value = '';
    $('key-copy-status').textContent = '';
    $('key-created').hidden = true;
  });

  // ---- providers and upstream keys ------------------------------------------------------------
  function loadProviderNames() {
    return api('GET', 'api/admin/providers').then(function (body) { st.providers = listOf(body); return st.providers; })
      .catch(function () { st.providers = []; return st.providers; });
  }
  function providerName(id) {
    for (var i = 0; i < st.providers.length; i++) if (st.providers[i].id === id) return st.providers[i].name;
    return short(id);
  }

  // aria-busy stays "true" until the cards and their upstream keys are drawn: a redraw replaces
  // every card (and an editor open in one), so whoever waits for the list waits for that.
  function loadProviders() {
    showError('providers-error', null);
    var box = $('providers-list');
    box.setAttribute('aria-busy', 'true');
    return api('GET', 'api/admin/providers').then(function (body) {
      st.providers = listOf(body);
      return renderProviders(st.providers);
    }).catch(function (err) { showError('providers-error', err); })
      .then(function () { box.setAttribute('aria-busy', 'false'); });
  }

  function renderProviders(providers) {
    var box = $('providers-list');
    box.textContent = '';
    if (providers.length === 0) { box.appendChild(emptyBox('No providers yet.')); return null; }
    var loads = providers.map(function (p) {
      var card = providerCard(p);
      box.appendChild(card);
      return card.keysLoaded;
    });
    gate(box);
    return Promise.all(loads);
  }

  function providerCard(p) {
    var card = el('article', 'provider-card');
    card.id = 'pcard-' + p.id;
    card.dataset.name = p.name;
    var head = el('div', 'provider-head');
    head.appendChild(el('span', 'name', p.name));
    var badge = el('span', 'badge ' + (p.enabled ? 'active' : 'disabled'), p.enabled ? 'enabled' : 'disabled');
    badge.dataset.role = 'provider-enabled';
    head.appendChild(badge);
    head.appendChild(el('span', 'badge', p.kind || 'openai'));
    if (p.source === 'file') head.appendChild(el('span', 'badge', 'PROVIDERS_FILE'));
    var toggle = button(p.enabled ? 'Disable' : 'Enable', 'secondary small', function () {
      toggle.disabled = true;
      api('PATCH', 'api/admin/providers/' + encodeURIComponent(p.id), { enabled: !p.enabled })
        .then(loadProviders).catch(function (err) { toggle.disabled = false; showError('providers-error', err); });
    });
    toggle.dataset.write = 'providers';
    toggle.dataset.role = 'provider-toggle';
    head.appendChild(toggle);
    var edit = button('Edit', 'secondary small', function () { openProviderEditor(card, p); });
    edit.dataset.write = 'providers';
    edit.dataset.role = 'provider-edit';
    head.appendChild(edit);
    card.appendChild(head);
    card.appendChild(el('div', 'url', p.base_url));
    card.appendChild(el('div', 'muted', 'models: ' + (p.models && p.models.length ? p.models.join(', ') : 'none') + ' · rpm ' + (p.rpm === null ? 'unlimited' : p.rpm) + (p.burst === null || p.burst === undefined ? '' : ' · burst ' + p.burst) + ' · timeout ' + p.timeout_ms + ' ms'));
    var pricing = p.pricing || {};
    var priced = Object.keys(pricing).map(function (m) { return m + ' ' + usd(pricing[m].input_per_mtok) + ' / ' + usd(pricing[m].output_per_mtok); });
    var meta = el('div', 'muted', 'pricing per Mtok (in / out): ' + (priced.length ? priced.join(', ') : 'built-in catalog') +
      ' · headers: ' + (p.headers && Object.keys(p.headers).length ? Object.keys(p.headers).join(', ') : 'none'));
    meta.dataset.role = 'provider-meta';
    card.appendChild(meta);
    var editorError = el('p', 'error');
    editorError.dataset.role = 'provider-edit-error';
    editorError.setAttribute('role', 'alert');
    card.appendChild(editorError);

    card.appendChild(el('h3', null, 'Upstream keys'));
    var keysBox = el('div');
    keysBox.dataset.role = 'upstream-keys';
    card.appendChild(keysBox);
    var error = el('p', 'error');
    error.dataset.role = 'upstream-error';
    if (canRead('provider_keys')) card.keysLoaded = loadUpstreamKeys(p, keysBox, error);
    else keysBox.appendChild(emptyBox('Your role may not read upstream keys.'));

    var form = el('form', 'inline-form');
    form.dataset.write = 'provider_keys';
    form.dataset.role = 'upstream-form';
    form.autocomplete = 'off';
    form.noValidate = true;
    var label = el('input');
    label.placeholder = 'label';
    label.maxLength = 128;
    label.dataset.field = 'label';
    var secret = el('input');
    secret.type = 'password';
    secret.placeholder = 'key value (write-only)';
    secret.autocomplete = 'new-password';
    secret.dataset.field = 'key';
    var priority = el('input');
    priority.type = 'number';
    priority.placeholder = 'priority (0-1000)';
    priority.dataset.field = 'priority';
    var maxRpm = el('input');
    maxRpm.type = 'number';
    maxRpm.placeholder = 'max rpm';
    maxRpm.dataset.field = 'max_rpm';
    var maxConc = el('input');
    maxConc.type = 'number';
    maxConc.placeholder = 'max concurrent (adaptive)';
    maxConc.dataset.field = 'max_concurrent';
    [label, secret, priority, maxRpm, maxConc].forEach(function (i) { form.appendChild(i); });
    var add = el('button', null, 'Add key');
    add.type = 'submit';
    form.appendChild(add);
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      error.textContent = '';
      var body = { label: label.value.trim(), key: secret.value };
      if (!body.label) { error.textContent = 'a label is required (field: label)'; return; }
      if (!body.key) { error.textContent = 'the key value is required (field: key)'; return; }
      var nums = { priority: priority, max_rpm: maxRpm, max_concurrent: maxConc };
      for (var f in nums) {
        var v = nums[f].value.trim();
        if (v === '') continue;
        if (!/^\d+$/.test(v)) { error.textContent = 'must be a whole number (field: ' + f + ')'; return; }
        body[f] = Number(v);
      }
      add.disabled = true;
      api('POST', 'api/admin/providers/' + encodeURIComponent(p.id) + '/keys', body).then(function () {
        label.value = '';
        priority.value = '';
        maxRpm.value = '';
        maxConc.value = '';
        return loadUpstreamKeys(p, keysBox, error);
      }).catch(function (err) { error.textContent = failureText(err); })
        .then(function () {
          secret.value = ''; // write-only: never kept in the page, whatever the answer
          add.disabled = false;
        });
    });
    card.appendChild(form);
    card.appendChild(error);
    return card;
  }

  function loadUpstreamKeys(p, box, error) {
    return api('GET', 'api/admin/providers/' + encodeURIComponent(p.id) + '/keys').then(function (body) {
      var keys = listOf(body);
      box.textContent = '';
      if (keys.length === 0) { box.appendChild(emptyBox('No upstream keys.')); return; }
      var t = table(['label', 'key', 'state', 'priority', 'max rpm', 'max tpm', 'max concurrent', 'requests', 'last used', '']);
      keys.forEach(function (k) {
        var tr = el('tr');
        tr.dataset.id = k.id;
        tr.dataset.label = k.label;
        td(tr, k.label, 'label-cell');
        td(tr, k.masked);
        var stc = el('td');
        var badge = el('span', 'badge ' + k.state, k.state);
        badge.dataset.role = 'key-state';
        stc.appendChild(badge);
        tr.appendChild(stc);
        td(tr, k.priority);
        td(tr, k.max_rpm);
        td(tr, k.max_tpm);
        td(tr, k.max_concurrent === null ? 'adaptive' : k.max_concurrent);
        td(tr, k.total_requests);
        td(tr, when(k.last_used_at));
        var actions = el('td');
        var wrap = el('div', 'actions');
        var toggle = button(k.enabled ? 'Disable' : 'Enable', 'secondary small', function () {
          toggle.disabled = true;
          api('PATCH', 'api/admin/provider-keys/' + encodeURIComponent(k.id), { enabled: !k.enabled })
            .then(function () { return loadUpstreamKeys(p, box, error); })
            .catch(function (err) { toggle.disabled = false; error.textContent = failureText(err); });
        });
        toggle.dataset.write = 'provider_keys';
        toggle.dataset.role = 'key-toggle';
        var edit = button('Edit', 'secondary small', function () { openUpstreamKeyEditor(tr, k, p, box, error); });
        edit.dataset.write = 'provider_keys';
        edit.dataset.role = 'key-edit';
        var del = button('Delete', 'danger small', function () {
          if (!window.confirm('Delete the upstream key "' + k.label + '" (' + k.masked + ') of ' + p.name + '? Its encrypted value is removed.')) return;
          api('DELETE', 'api/admin/provider-keys/' + encodeURIComponent(k.id))
            .then(function () { return loadUpstreamKeys(p, box, error); })
            .catch(function (err) { error.textContent = failureText(err); });
        });
        del.dataset.write = 'provider_keys';
        del.dataset.role = 'key-delete';
        wrap.appendChild(edit);
        wrap.appendChild(toggle);
        wrap.appendChild(del);
        actions.appendChild(wrap);
        tr.appendChild(actions);
        t.appendChild(tr);
      });
      var scroll = el('div', 'table-scroll');
      scroll.appendChild(t);
      box.appendChild(scroll);
      gate(box);
    }).catch(function (err) { error.textContent = failureText(err); });
  }

  /** A number (decimals allowed) or a client-side refusal naming the API's field; '' when empty. */
  function decimalOrEmpty(value, field) {
    var v = String(value).trim();
    if (v === '') return '';
    var n = Number(v);
    if (!isFinite(n)) throw new ApiFailure(0, 'must be a number', field);
    return n;
  }
  /** A whole number of at least 0 (priority), or a client-side refusal naming the field. */
  function wholeFromZero(value, field) {
    var v = String(value).trim();
    if (!/^\d+$/.test(v)) throw new ApiFailure(0, 'must be a whole number', field);
    return Number(v);
  }
  /** JSON with sorted keys: equal settings compare equal whatever the order they were typed in. */
  function canonical(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return JSON.stringify(value);
    return '{' + Object.keys(value).sort().map(function (k) { return JSON.stringify(k) + ':' + canonical(value[k]); }).join(',') + '}';
  }
  // Header names that usually carry a secret: their value is typed in a password field (kept out of
  // sight and out of the page's HTML; the API stores and returns it as given, credentials refused).
  var SECRET_HEADER = /(token|secret|key|auth|password|passwd|signature|session|cookie)/i;

  /**
   * Rows of inputs (a provider's pricing, its extra headers): one row per entry, "+ row" adds one,
   * Remove drops one. read() gives the rows' trimmed values, empty rows left out.
   */
  function rowsEditor(role, columns, rows, addText) {
    var t = table(columns.map(function (c) { return c.title; }).concat(['']));
    t.className = 'targets';
    t.dataset.role = role;
    function add(values) {
      var tr = el('tr', 'entry');
      columns.forEach(function (c, n) {
        var cell = el('td');
        var i = input(c.field, values ? values[n] : '', c.placeholder, c.type);
        if (c.type === 'number') { i.step = 'any'; i.min = '0'; }
        if (c.secret && values && SECRET_HEADER.test(String(values[0]))) { i.type = 'password'; i.autocomplete = 'off'; }
        cell.appendChild(i);
        tr.appendChild(cell);
      });
      var last = el('td');
      last.appendChild(button('Remove', 'danger small', function () { tr.remove(); }));
      tr.appendChild(last);
      t.appendChild(tr);
    }
    rows.forEach(add);
    var wrap = el('div', 'rows-editor');
    wrap.appendChild(t);
    var more = button(addText, 'secondary small', function () { add(null); });
    more.dataset.role = role + '-add';
    wrap.appendChild(more);
    return {
      node: wrap,
      read: function () {
        var out = [];
        var trs = t.querySelectorAll('tr.entry');
        for (var r = 0; r < trs.length; r++) {
          var inputs = trs[r].querySelectorAll('input');
          var values = [];
          for (var c = 0; c < inputs.length; c++) values.push(inputs[c].value.trim());
          if (values.join('') !== '') out.push(values);
        }
        return out;
      }
    };
  }

  // Edits a provider in place (PATCH /api/admin/providers/{id}); only the fields that changed are
  // sent. Pricing and headers are each sent whole (the API replaces the table) when they changed.
  function openProviderEditor(card, p) {
    var open = card.querySelector('.provider-editor');
    var error = card.querySelector('[data-role="provider-edit-error"]');
    error.textContent = '';
    if (open) { open.remove(); return; }
    var form = el('form', 'provider-editor');
    form.noValidate = true;
    form.autocomplete = 'off';
    var grid = el('div', 'form-grid');
    var name = input('name', p.name, 'name');
    name.maxLength = 64;
    var kind = el('select');
    kind.dataset.field = 'kind';
    ['openai', 'anthropic'].forEach(function (k) { var o = el('option', null, k); o.value = k; kind.appendChild(o); });
    kind.value = p.kind || 'openai';
    var url = input('base_url', p.base_url, 'https://api.openai.com/v1');
    var models = input('models', (p.models || []).join(', '), 'gpt-4o-mini, text-embedding-*');
    var rpm = input('rpm', p.rpm, 'unlimited', 'number');
    var burst = input('burst', p.burst, 'none', 'number');
    var timeout = input('timeout_ms', p.timeout_ms, '60000', 'number');
    var urlLabel = labelled('Base URL', url);
    urlLabel.className = 'wide';
    var modelsLabel = labelled('Models', models);
    modelsLabel.className = 'wide';
    [labelled('Name', name), labelled('Kind', kind), urlLabel, modelsLabel, labelled('RPM', rpm),
      labelled('Burst', burst), labelled('Timeout ms', timeout)].forEach(function (l) { grid.appendChild(l); });
    form.appendChild(grid);

    var pricing = p.pricing || {};
    form.appendChild(el('h3', null, 'Pricing (USD per million tokens; models without an entry use the built-in catalog)'));
    var prices = rowsEditor('pricing', [
      { title: 'model or pattern', field: 'model', placeholder: 'gpt-4o-mini' },
      { title: 'input', field: 'input_per_mtok', placeholder: '0.15', type: 'number' },
      { title: 'output', field: 'output_per_mtok', placeholder: '0.6', type: 'number' },
      { title: 'cached input', field: 'cached_input_per_mtok', placeholder: '= input', type: 'number' }
    ], Object.keys(pricing).map(function (m) {
      return [m, pricing[m].input_per_mtok, pricing[m].output_per_mtok, pricing[m].cached_input_per_mtok];
    }), '+ price');
    form.appendChild(prices.node);

    var headers = p.headers || {};
    form.appendChild(el('h3', null, 'Extra upstream headers (no credentials: those go in upstream keys)'));
    var heads = rowsEditor('headers', [
      { title: 'name', field: 'header_name', placeholder: 'OpenAI-Organization' },
      { title: 'value', field: 'header_value', placeholder: 'org-123', secret: true }
    ], Object.keys(headers).map(function (h) { return [h, headers[h]]; }), '+ header');
    form.appendChild(heads.node);

    var actions = el('div', 'form-actions');
    var save = el('button', null, 'Save provider');
    save.type = 'submit';
    actions.appendChild(save);
    actions.appendChild(button('Cancel', 'secondary small', function () { error.textContent = ''; form.remove(); }));
    form.appendChild(actions);

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      error.textContent = '';
      var body = {};
      try {
        var newName = name.value.trim();
        if (!newName) throw new ApiFailure(0, 'a name is required', 'name');
        if (newName !== p.name) body.name = newName;
        if (kind.value !== (p.kind || 'openai')) body.kind = kind.value;
        var newUrl = url.value.trim();
        if (!/^https?:\/\/\S+$/.test(newUrl)) throw new ApiFailure(0, 'the base URL must start with http:// or https://', 'base_url');
        if (newUrl !== p.base_url) body.base_url = newUrl;
        var list = words(models.value);
        if (list.join(',') !== (p.models || []).join(',')) body.models = list;
        var r = wholeOrNull(rpm.value, 'rpm'), b = wholeOrNull(burst.value, 'burst');
        if (r !== (p.rpm === undefined ? null : p.rpm)) body.rpm = r;
        if (b !== (p.burst === undefined ? null : p.burst)) body.burst = b;
        var tm = wholeOrNull(timeout.value, 'timeout_ms');
        if (tm === null) throw new ApiFailure(0, 'a timeout is required', 'timeout_ms');
        if (tm !== p.timeout_ms) body.timeout_ms = tm;

        var priceTable = {}, same = {};
        prices.read().forEach(function (row) {
          var model = row[0];
          if (!model) throw new ApiFailure(0, 'a model id or pattern is required', 'pricing');
          if (priceTable[model]) throw new ApiFailure(0, model + ' is given twice', 'pricing.' + model);
          var inp = decimalOrEmpty(row[1], 'pricing.' + model + '.input_per_mtok');
          var out = decimalOrEmpty(row[2], 'pricing.' + model + '.output_per_mtok');
          var cached = decimalOrEmpty(row[3], 'pricing.' + model + '.cached_input_per_mtok');
          if (inp === '') throw new ApiFailure(0, 'a price is required', 'pricing.' + model + '.input_per_mtok');
          if (out === '') throw new ApiFailure(0, 'a price is required', 'pricing.' + model + '.output_per_mtok');
          priceTable[model] = { input_per_mtok: inp, output_per_mtok: out };
          if (cached !== '') priceTable[model].cached_input_per_mtok = cached;
          // What the API stores (cached input defaults to input), to tell whether anything changed.
          same[model] = { input_per_mtok: inp, output_per_mtok: out, cached_input_per_mtok: cached === '' ? inp : cached };
        });
        if (canonical(same) !== canonical(pricing)) body.pricing = priceTable;

        var extra = {};
        heads.read().forEach(function (row) {
          if (!row[0]) throw new ApiFailure(0, 'a header name is required', 'headers');
          extra[row[0]] = row[1];
        });
        if (canonical(extra) !== canonical(headers)) {
          // Headers go whole: a redacted preview (a value with "…", what a role that may not edit
          // providers reads) must never be sent back as a value. The API refuses it too (400).
          Object.keys(extra).forEach(function (h) {
            if (extra[h].indexOf('\u2026') >= 0) throw new ApiFailure(0, 'the value of ' + h + ' is a redacted preview: type the real value (or remove the header)', 'headers.' + h);
          });
          body.headers = extra;
        }
      } catch (err) { error.textContent = failureText(err); return; }
      if (Object.keys(body).length === 0) { form.remove(); return; }
      save.disabled = true;
      api('PATCH', 'api/admin/providers/' + encodeURIComponent(p.id), body).then(loadProviders)
        .catch(function (err) { error.textContent = failureText(err); save.disabled = false; });
    });
    card.insertBefore(form, error);
    name.focus();
  }

  // Edits an upstream key in place (PATCH /api/admin/provider-keys/{id}); only the fields that
  // changed are sent. The concurrency field is max_concurrent: empty = adaptive (null), a number =
  // fixed (what PATCH /api/admin/adaptive/keys/{id}/mode and /limit set). The value is write-only:
  // never shown, an empty field keeps it, and the field is cleared whatever the answer.
  function openUpstreamKeyEditor(tr, k, p, box, error) {
    var next = tr.nextSibling;
    error.textContent = '';
    if (next && next.classList && next.classList.contains('upstream-editor')) { next.remove(); return; }
    var editor = el('tr', 'upstream-editor');
    editor.dataset.id = k.id;
    var cell = el('td');
    cell.colSpan = tr.children.length;
    var form = el('form', 'inline-form');
    form.noValidate = true;
    form.autocomplete = 'off';
    var label = input('label', k.label, 'label');
    label.maxLength = 128;
    var priority = input('priority', k.priority, '0-1000', 'number');
    var maxRpm = input('max_rpm', k.max_rpm, 'unlimited', 'number');
    var maxTpm = input('max_tpm', k.max_tpm, 'unlimited', 'number');
    var maxConc = input('max_concurrent', k.max_concurrent, 'adaptive', 'number');
    var secret = input('key', '', 'unchanged (write-only)', 'password');
    secret.autocomplete = 'new-password';
    [labelled('Label', label), labelled('Priority', priority), labelled('Max RPM', maxRpm), labelled('Max TPM', maxTpm),
      labelled('Max concurrent (empty: adaptive)', maxConc), labelled('Replace the value', secret)].forEach(function (l) { form.appendChild(l); });
    var save = el('button', null, 'Save');
    save.type = 'submit';
    form.appendChild(save);
    form.appendChild(button('Cancel', 'secondary small', function () { secret.value = ''; editor.remove(); }));
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      error.textContent = '';
      var body = {};
      try {
        var newLabel = label.value.trim();
        if (!newLabel) throw new ApiFailure(0, 'a label is required', 'label');
        if (newLabel !== k.label) body.label = newLabel;
        var pr = wholeFromZero(priority.value, 'priority');
        if (pr !== k.priority) body.priority = pr;
        var r = wholeOrNull(maxRpm.value, 'max_rpm'), t = wholeOrNull(maxTpm.value, 'max_tpm'), c = wholeOrNull(maxConc.value, 'max_concurrent');
        if (r !== k.max_rpm) body.max_rpm = r;
        if (t !== k.max_tpm) body.max_tpm = t;
        if (c !== k.max_concurrent) body.max_concurrent = c;
        if (secret.value !== '') body.key = secret.value;
      } catch (err) { error.textContent = failureText(err); return; }
      secret.value = ''; // write-only: never kept in the page, whatever the answer
      if (Object.keys(body).length === 0) { editor.remove(); return; }
      save.disabled = true;
      api('PATCH', 'api/admin/provider-keys/' + encodeURIComponent(k.id), body)
        .then(function () { return loadUpstreamKeys(p, box, error); })
        .catch(function (err) { error.textContent = failureText(err); save.disabled = false; });
    });
    cell.appendChild(form);
    editor.appendChild(cell);
    tr.parentNode.insertBefore(editor, tr.nextSibling);
    label.focus();
  }

  // Set here, not in the page: the HTML carries no URL at all (its test checks there is no CDN link).
  $('provider-url').placeholder = 'https://api.openai.com/v1';
  $('provider-form').addEventListener('submit', function (event) {
    event.preventDefault();
    showError('provider-form-error', null);
    var body;
    try {
      body = { name: $('provider-name').value.trim(), base_url: $('provider-url').value.trim(), models: words($('provider-models').value) };
      if (!body.name) throw new ApiFailure(0, 'a name is required', 'name');
      if (!/^https?:\/\/\S+$/.test(body.base_url)) throw new ApiFailure(0, 'the base URL must start with http:// or https://', 'base_url');
      // kind: sent only when not the default, so this works on gateways that predate the field.
      if ($('provider-kind').value === 'anthropic') body.kind = 'anthropic';
      var rpm = intOrNull('provider-rpm');
      if (rpm !== null) body.rpm = rpm;
    } catch (err) { showError('provider-form-error', err); return; }
    $('provider-submit').disabled = true;
    api('POST', 'api/admin/providers', body).then(function () {
      ['provider-name', 'provider-url', 'provider-models', 'provider-rpm'].forEach(function (id) { $(id).value = ''; });
      $('provider-kind').value = 'openai';
      return loadProviders();
    }).catch(function (err) { showError('provider-form-error', err); })
      .then(function () { $('provider-submit').disabled = false; });
  });

  // ---- routes ---------------------------------------------------------------------------------
  function loadRoutes() {
    showError('routes-error', null);
    return api('GET', 'api/admin/routes').then(function (body) {
      st.routes = listOf(body);
      renderRoutes(st.routes);
    }).catch(function (err) { showError('routes-error', err); });
  }

  function renderRoutes(routes) {
    var box = $('routes-list');
    box.textContent = '';
    if (routes.length === 0) { box.appendChild(emptyBox('No routes: a client\'s model goes to every provider that lists it.')); return; }
    var t = table(['model alias', 'targets (provider / model · weight · tier)', 'max attempts', 'state', '']);
    t.id = 'routes-table';
    routes.forEach(function (r) {
      var tr = el('tr');
      tr.dataset.id = r.id;
      tr.dataset.model = r.model;
      td(tr, r.model, 'label-cell');
      var targets = el('td');
      r.targets.forEach(function (x) {
        targets.appendChild(el('div', null, (x.provider || 'deleted provider') + ' / ' + x.model + ' · w' + x.weight + ' · tier ' + x.tier + (x.breaker !== 'auto' ? ' · forced ' + x.breaker : '')));
      });
      tr.appendChild(targets);
      td(tr, r.max_attempts);
      var stc = el('td');
      stc.appendChild(el('span', 'badge ' + (r.enabled ? 'active' : 'disabled'), r.enabled ? 'enabled' : 'disabled'));
      tr.appendChild(stc);
      var actions = el('td');
      var wrap = el('div', 'actions');
      var edit = button('Edit', 'secondary small', function () { editRoute(r); });
      edit.dataset.write = 'providers';
      edit.dataset.role = 'route-edit';
      var del = button('Delete', 'danger small', function () {
        if (!window.confirm('Delete the route "' + r.model + '"? Clients sending this model get no route any more.')) return;
        api('DELETE', 'api/admin/routes/' + encodeURIComponent(r.id)).then(loadRoutes).catch(function (err) { showError('routes-error', err); });
      });
      del.dataset.write = 'providers';
      del.dataset.role = 'route-delete';
      wrap.appendChild(edit);
      wrap.appendChild(del);
      actions.appendChild(wrap);
      tr.appendChild(actions);
      t.appendChild(tr);
    });
    box.appendChild(t);
    gate(box);
  }

  function addTargetRow(target) {
    var tr = el('tr');
    tr.original = target || null; // timeouts and breaker are kept as they were when editing
    var providerCell = el('td');
    var select = el('select');
    select.dataset.field = 'provider_id';
    st.providers.forEach(function (p) {
      var o = el('option', null, p.name);
      o.value = p.id;
      select.appendChild(o);
    });
    if (target) select.value = target.provider_id;
    providerCell.appendChild(select);
    tr.appendChild(providerCell);
    function input(field, type, value, placeholder) {
      var c = el('td');
      var i = el('input');
      i.type = type;
      i.dataset.field = field;
      i.placeholder = placeholder;
      if (value !== undefined && value !== null) i.value = String(value);
      c.appendChild(i);
      tr.appendChild(c);
    }
    input('model', 'text', target ? target.model : '', 'upstream model id');
    input('weight', 'number', target ? target.weight : '', '1');
    input('tier', 'number', target ? target.tier : '', '1');
    var c = el('td');
    c.appendChild(button('Remove', 'danger small', function () { tr.remove(); }));
    tr.appendChild(c);
    $('route-targets').appendChild(tr);
  }

  function resetRouteForm() {
    st.editingRoute = null;
    $('route-form-title').firstChild.textContent = 'Create a route ';
    $('route-submit').textContent = 'Create route';
    $('route-cancel').hidden = true;
    $('route-model').value = '';
    $('route-attempts').value = '';
    $('route-enabled').checked = true;
    $('route-targets').textContent = '';
    addTargetRow(null);
  }

  function editRoute(r) {
    st.editingRoute = r;
    $('route-form-title').firstChild.textContent = 'Edit the route ' + r.model + ' ';
    $('route-submit').textContent = 'Save route';
    $('route-cancel').hidden = false;
    $('route-model').value = r.model;
    $('route-attempts').value = String(r.max_attempts);
    $('route-enabled').checked = r.enabled;
    $('route-targets').textContent = '';
    r.targets.forEach(addTargetRow);
    showError('route-form-error', null);
    $('route-form').scrollIntoView();
  }
  $('route-add-target').addEventListener('click', function () { addTargetRow(null); });
  $('route-cancel').addEventListener('click', resetRouteForm);

  $('route-form').addEventListener('submit', function (event) {
    event.preventDefault();
    showError('route-form-error', null);
    var body;
    try {
      body = { model: $('route-model').value.trim(), enabled: $('route-enabled').checked, targets: [] };
      if (!body.model) throw new ApiFailure(0, 'a model alias is required', 'model');
      var attempts = intOrNull('route-attempts');
      if (attempts !== null) body.max_attempts = attempts;
      var rows = $('route-targets').children;
      if (rows.length === 0) throw new ApiFailure(0, 'add at least one target', 'targets');
      for (var i = 0; i < rows.length; i++) {
        var row = rows[i];
        var f = function (name) { return row.querySelector('[data-field="' + name + '"]').value.trim(); };
        var target = { provider_id: f('provider_id'), model: f('model') };
        if (!target.provider_id) throw new ApiFailure(0, 'pick a provider', 'targets.' + i + '.provider_id');
        if (!target.model) throw new ApiFailure(0, 'the upstream model is required', 'targets.' + i + '.model');
        ['weight', 'tier'].forEach(function (name) {
          var v = f(name);
          if (v === '') return;
          if (!/^\d+$/.test(v)) throw new ApiFailure(0, 'must be a whole number', 'targets.' + i + '.' + name);
          target[name] = Number(v);
        });
        var orig = row.original;
        if (orig && orig.provider_id === target.provider_id && orig.model === target.model) {
          if (orig.timeouts) target.timeouts = orig.timeouts;
          if (orig.breaker) target.breaker = orig.breaker;
        }
        body.targets.push(target);
      }
    } catch (err) { showError('route-form-error', err); return; }
    var editing = st.editingRoute;
    $('route-submit').disabled = true;
    (editing ? api('PATCH', 'api/admin/routes/' + encodeURIComponent(editing.id), body) : api('POST', 'api/admin/routes', body))
      .then(function () { resetRouteForm(); return loadRoutes(); })
      .catch(function (err) { showError('route-form-error', err); })
      .then(function () { $('route-submit').disabled = false; });
  });

  // ---- budgets --------------------------------------------------------------------------------
  function loadBudgets() {
    if (canRead('users')) {
      showError('budget-users-error', null);
      loadUsers().then(function (users) {
        renderBudgetTable($('budget-users'), 'budget-users-table', ['user', 'role', 'team'], users, function (u) {
          return [u.email || u.name || short(u.id), u.role, u.team_id ? short(u.team_id) : '—'];
        }, 'users', 'api/admin/users/', 'budget-users-error');
      }).catch(function (err) { showError('budget-users-error', err); });
    } else $('budget-users').textContent = 'Your role may not read users.';
    if (canRead('teams')) {
      showError('budget-teams-error', null);
      api('GET', 'api/admin/teams?limit=500').then(function (body) {
        st.teams = listOf(body);
        renderBudgetTable($('budget-teams'), 'budget-teams-table', ['team', 'members'], st.teams, function (t) {
          return [t.name, t.member_count];
        }, 'teams', 'api/admin/teams/', 'budget-teams-error');
      }).catch(function (err) { showError('budget-teams-error', err); });
    } else $('budget-teams').textContent = 'Your role may not read teams.';
  }

  function renderBudgetTable(box, id, headers, rows, cells, resource, path, errorId) {
    box.textContent = '';
    if (rows.length === 0) { box.appendChild(emptyBox('None yet.')); return; }
    var t = table(headers.concat(['budget', '']));
    t.id = id;
    rows.forEach(function (row) {
      var tr = el('tr');
      tr.dataset.id = row.id;
      cells(row).forEach(function (c) { td(tr, c, 'label-cell'); });
      var budget = td(tr, budgetText(row.budget));
      budget.dataset.role = 'budget';
      var actions = el('td');
      var edit = button('Edit budget', 'secondary small', function () { openBudgetEditor(tr, row, resource, path, errorId); });
      edit.dataset.write = resource;
      edit.dataset.role = 'budget-edit';
      actions.appendChild(edit);
      tr.appendChild(actions);
      t.appendChild(tr);
    });
    box.appendChild(t);
    gate(box);
  }

  function openBudgetEditor(tr, row, resource, path, errorId) {
    var next = tr.nextSibling;
    if (next && next.classList && next.classList.contains('budget-editor')) { next.remove(); return; }
    var editor = el('tr', 'budget-editor');
    var cell = el('td');
    cell.colSpan = tr.children.length;
    var form = el('form', 'inline-form');
    form.noValidate = true;
    var amount = el('input');
    amount.type = 'number';
    amount.step = 'any';
    amount.min = '0';
    amount.placeholder = 'USD';
    amount.dataset.field = 'limit_usd';
    if (row.budget) amount.value = String(row.budget.limit_usd);
    var period = el('select');
    period.dataset.field = 'period';
    PERIODS.forEach(function (p) { var o = el('option', null, p); o.value = p; period.appendChild(o); });
    period.value = row.budget ? row.budget.period : 'month';
    var save = el('button', null, 'Save');
    save.type = 'submit';
    function send(budget) {
      api('PATCH', path + encodeURIComponent(row.id), { budget: budget }).then(function () { loadBudgets(); })
        .catch(function (err) { showError(errorId, err); });
    }
    var clear = button('Remove budget', 'danger small', function () { send(null); });
    var cancel = button('Cancel', 'secondary small', function () { editor.remove(); });
    form.appendChild(amount);
    form.appendChild(period);
    form.appendChild(save);
    form.appendChild(clear);
    form.appendChild(cancel);
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var n = Number(amount.value);
      if (amount.value.trim() === '' || !(n > 0)) { showError(errorId, new ApiFailure(0, 'the budget must be a positive amount of USD', 'budget.limit_usd')); return; }
      send({ limit_usd: n, period: period.value });
    });
    cell.appendChild(form);
    editor.appendChild(cell);
    tr.parentNode.insertBefore(editor, tr.nextSibling);
    amount.focus();
  }

  // ---- request browser ------------------------------------------------------------------------
  function fillProviderFilter() {
    var select = $('rq-provider');
    while (select.children.length > 1) select.removeChild(select.lastChild);
    st.providers.forEach(function (p) { var o = el('option', null, p.name); o.value = p.id; select.appendChild(o); });
  }

  function requestsQuery() {
    var q = [];
    function add(name, value) { if (value) q.push(name + '=' + encodeURIComponent(value)); }
    add('model', $('rq-model').value.trim());
    add('endpoint', $('rq-endpoint').value);
    add('provider_id', $('rq-provider').value);
    add('status', $('rq-status').value.trim());
    add('key_id', $('rq-key').value.trim());
    add('user_id', $('rq-user').value.trim());
    add('team_id', $('rq-team').value.trim());
    ['from', 'to'].forEach(function (name) {
      var v = $('rq-' + name).value;
      if (v) add(name, new Date(v).toISOString());
    });
    q.push('limit=' + encodeURIComponent($('rq-limit').value));
    return q.join('&');
  }

  function searchRequests() {
    st.requestsQuery = requestsQuery();
    st.requestsCursor = null;
    $('requests-list').textContent = '';
    closeDetail();
    loadRequests(false);
  }
  $('requests-form').addEventListener('submit', function (event) { event.preventDefault(); searchRequests(); });
  $('rq-more').addEventListener('click', function () { loadRequests(true); });

  function loadRequests(more) {
    showError('requests-error', null);
    var path = 'api/admin/requests?' + st.requestsQuery + (more && st.requestsCursor ? '&cursor=' + encodeURIComponent(st.requestsCursor) : '');
    $('rq-more').disabled = true;
    return api('GET', path).then(function (body) {
      st.requestsCursor = body && body.next_cursor ? body.next_cursor : null;
      appendRequests(listOf(body), more);
      $('rq-more').hidden = !st.requestsCursor;
    }).catch(function (err) {
      $('rq-more').hidden = true;
      if (err instanceof ApiFailure && err.status === 404) {
        $('requests-error').textContent = 'The request log is not available on this gateway (GET /api/admin/requests answered 404).';
      } else showError('requests-error', err);
    }).then(function () { $('rq-more').disabled = false; });
  }

  function appendRequests(rows, more) {
    var box = $('requests-list');
    var t = $('requests-table');
    if (!more || !t) {
      box.textContent = '';
      if (rows.length === 0) { box.appendChild(emptyBox('No requests match.')); return; }
      t = table(['time', 'endpoint', 'model', 'provider', 'status', 'tokens in / out', 'cost', 'key', 'user', 'team']);
      t.id = 'requests-table';
      var scroll = el('div', 'table-scroll');
      scroll.appendChild(t);
      box.appendChild(scroll);
    }
    rows.forEach(function (r) {
      var tr = el('tr', 'clickable');
      tr.dataset.id = r.id;
      td(tr, when(r.created_at));
      td(tr, r.endpoint || '—');
      td(tr, (r.model || '—') + (r.served_model && r.served_model !== r.model ? ' → ' + r.served_model : ''), 'label-cell');
      td(tr, r.provider_name || (r.provider_id ? providerName(r.provider_id) : '—'), 'label-cell');
      var status = td(tr, r.status);
      if (typeof r.status === 'number') status.className = r.status >= 500 ? 'bad' : r.status >= 400 ? 'warn' : '';
      td(tr, (r.prompt_tokens === null || r.prompt_tokens === undefined ? '—' : r.prompt_tokens) + ' / ' + (r.completion_tokens === null || r.completion_tokens === undefined ? '—' : r.completion_tokens));
      td(tr, usd(r.cost_usd));
      td(tr, short(r.key_id || r.api_key_id));
      td(tr, short(r.user_id));
      td(tr, short(r.team_id));
      tr.addEventListener('click', function () { openDetail(r, tr); });
      t.appendChild(tr);
    });
  }

  /** Captured bodies are JSON text (secrets already redacted by the API): indented when they parse. */
  function pretty(v) {
    if (typeof v !== 'string') return JSON.stringify(v, null, 2);
    try { return JSON.stringify(JSON.parse(v), null, 2); } catch (e) { return v; }
  }

  function closeDetail() {
    $('request-detail').hidden = true;
    $('request-detail').textContent = '';
    document.querySelector('.requests-layout').classList.remove('with-detail');
  }

  function openDetail(row, tr) {
    var selected = document.querySelectorAll('#requests-table tr.selected');
    for (var i = 0; i < selected.length; i++) selected[i].classList.remove('selected');
    tr.classList.add('selected');
    var box = $('request-detail');
    box.hidden = false;
    document.querySelector('.requests-layout').classList.add('with-detail');
    box.textContent = '';
    box.appendChild(el('div', 'muted', 'Loading request ' + row.id + '…'));
    api('GET', 'api/admin/requests/' + encodeURIComponent(row.id)).then(function (r) {
      box.textContent = '';
      var head = el('h2', null, 'Request ');
      head.appendChild(el('code', null, r.id));
      box.appendChild(head);
      box.appendChild(button('Close', 'secondary small', closeDetail));
      var dl = el('dl');
      Object.keys(r).forEach(function (k) {
        var v = r[k];
        if (k === 'attempts' || k === 'request_body' || k === 'response_body' || (v !== null && typeof v === 'object')) return;
        dl.appendChild(el('dt', null, k));
        dl.appendChild(el('dd', null, v === null ? '—' : k === 'provider_id' ? providerName(v) + ' (' + v + ')' : v));
      });
      box.appendChild(dl);
      if (Array.isArray(r.attempts)) {
        box.appendChild(el('h2', null, 'Attempts (' + r.attempts.length + ')'));
        if (r.attempts.length) {
          var cols = [];
          r.attempts.forEach(function (a) { Object.keys(a).forEach(function (k) { if (cols.indexOf(k) < 0 && (a[k] === null || typeof a[k] !== 'object')) cols.push(k); }); });
          var t = table(cols);
          t.id = 'request-attempts';
          r.attempts.forEach(function (a) {
            var atr = el('tr');
            cols.forEach(function (k) { td(atr, a[k] === undefined ? null : a[k]); });
            t.appendChild(atr);
          });
          var scroll = el('div', 'table-scroll');
          scroll.appendChild(t);
          box.appendChild(scroll);
        }
      }
      ['request_body', 'response_body'].forEach(function (k) {
        if (r[k] === undefined || r[k] === null) return;
        box.appendChild(el('h2', null, k.replace('_', ' ')));
        box.appendChild(el('pre', null, pretty(r[k])));
      });
      Object.keys(r).forEach(function (k) {
        var v = r[k];
        if (k === 'attempts' || k === 'request_body' || k === 'response_body' || v === null || typeof v !== 'object') return;
        box.appendChild(el('h2', null, k));
        box.appendChild(el('pre', null, JSON.stringify(v, null, 2)));
      });
    }).catch(function (err) {
      box.textContent = '';
      box.appendChild(el('p', 'error', failureText(err)));
    });
  }

  gate();
})();
`;
