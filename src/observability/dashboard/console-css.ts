/** The admin console's styles, appended to the dashboard stylesheet (same palette and look). */
export const CONSOLE_CSS = `
.tabs { display: flex; align-items: center; gap: 4px; border-bottom: 1px solid var(--line); margin: -4px 0 14px; flex-wrap: wrap; }
.tab { background: transparent; color: var(--muted); border-radius: 6px 6px 0 0; padding: 8px 14px; font-weight: 600; border-bottom: 2px solid transparent; }
.tab:hover { color: var(--text); }
.tab.active { color: var(--text); border-bottom-color: var(--accent); }
.whoami { margin-left: auto; color: var(--muted); font-size: 12px; }
.tab-panel > .panel, .tab-panel > section { margin-bottom: 14px; }
.form-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px 14px; align-items: end; }
.form-grid label, .inline-form label { display: flex; flex-direction: column; gap: 4px; color: var(--muted); font-size: 12px; }
.form-grid label.wide { grid-column: span 2; }
label.inline { display: inline-flex; flex-direction: row; align-items: center; gap: 6px; font-size: 12px; color: var(--muted); font-weight: 400; margin-left: 10px; }
input, select { padding: 7px 9px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--text); font: inherit; min-width: 0; }
input[type="checkbox"] { padding: 0; }
input:focus, select:focus { outline: 1px solid var(--accent); }
.form-actions { display: flex; gap: 8px; align-items: center; margin-top: 10px; }
.form-grid .form-actions { margin-top: 0; }
button.secondary { background: var(--panel-2); color: var(--text); border: 1px solid var(--line); }
button.small { padding: 4px 10px; font-size: 12px; font-weight: 500; }
button.danger { background: transparent; color: var(--bad); border: 1px solid rgba(248,81,73,.5); }
button:disabled { opacity: .5; cursor: not-allowed; }
td .actions { display: flex; gap: 6px; }
.secret-box { margin-top: 12px; border: 1px solid var(--warn); background: rgba(210,153,34,.08); border-radius: 8px; padding: 12px; }
.secret-note { margin: 0 0 8px; color: var(--warn); }
.secret-row { display: flex; gap: 8px; }
.secret-row input { flex: 1; font-family: ui-monospace, monospace; line-height: 1.6; padding: 8px 10px; }
.provider-card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 14px; }
.provider-card .provider-head { flex-wrap: wrap; }
.provider-card .url { color: var(--muted); font-family: ui-monospace, monospace; font-size: 12px; }
.provider-card h3 { font-size: 13px; margin: 12px 0 6px; color: var(--muted); font-weight: 600; }
.inline-form { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; margin-top: 8px; }
.inline-form input { width: 150px; }
.provider-editor { border-top: 1px solid var(--line); margin-top: 10px; padding-top: 10px; }
.rows-editor { margin-bottom: 4px; }
.rows-editor table.targets { margin: 0 0 6px; }
table.targets { margin-top: 10px; }
table.targets input, table.targets select { width: 100%; }
.requests-layout { display: grid; grid-template-columns: minmax(0, 1fr); gap: 14px; margin-top: 10px; }
.requests-layout.with-detail { grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); }
.requests-layout tr.clickable { cursor: pointer; }
.requests-layout tr.clickable:hover td, .requests-layout tr.selected td { background: var(--panel-2); }
.detail { background: var(--panel-2); border: 1px solid var(--line); border-radius: 8px; padding: 12px; min-width: 0; }
.detail dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 12px; margin: 0 0 10px; font-size: 12.5px; }
.detail dt { color: var(--muted); }
.detail dd { margin: 0; overflow-wrap: anywhere; }
.detail pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px; max-height: 260px; overflow: auto; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
.table-scroll { overflow-x: auto; }
td.bad { color: var(--bad); }
td.warn { color: var(--warn); }
.tab-panel .error:empty, .provider-card .error:empty { display: none; }
`;
