/* HotSync's Cockpit page.
 *
 * Everything goes through the project's own commands with cockpit.spawn: hotsync status --json,
 * hotsync log --json, hotsync dumps --json, config printjson/info/history --json, config setprop,
 * signal-event --json, hotsync sync, hotsync-promote --dry-run/--yes --json. The page never reads nor
 * writes a file itself, so every rule (the schema, the locks, the guards, the refusals) is the commands'.
 *
 * Reads run with superuser "try" (as root with administrative access, else as the user: read-only),
 * actions with superuser "require". Without administrative access no action is shown (body.readonly).
 */
"use strict";

(function () {
    const REFRESH_MS = 5000;
    const H = {
        admin: false, status: null, fetchedAt: 0, tab: "dashboard", busy: false, settings: null, info: {},
        log: [], history: [], plan: null, hostname: "", refreshing: false, lastRunSeen: null,
        formSeq: 0, edited: false,        // the settings form: the newest load, typed into since it
    };
    const PHASES = ["verify", "fence", "links", "config", "databases", "steps", "role", "services"];
    const PHASE_WORDS = {
        verify: "verify: the copy is complete, the master is not pushing",
        fence: "fence: raise the pair's epoch; pushes to this host are refused from then on",
        links: "links: the copy's symbolic links written back as the master had them",
        config: "config: the master's configuration database becomes this host's (keeping this host's own props)",
        databases: "databases: restore the shipped dumps",
        steps: "plugin steps: the applications' promote steps",
        role: "role: hotsync role master, no SlaveHost yet",
        services: "services: signal-event nethserver-hotsync-save",
    };

    // ------------------------------------------------------------------ small helpers
    const $ = (id) => document.getElementById(id);
    function setText(id, s) { const e = $(id); if (e) e.textContent = s == null ? "" : String(s); }
    function el(tag, attrs, ...kids) {
        const e = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (v == null || v === false) continue;
            if (k === "class") e.className = v;
            else if (k === "text") e.textContent = v;
            else e.setAttribute(k, v === true ? "" : v);
        }
        for (const k of kids) if (k != null) e.append(k);
        return e;
    }
    /* replaceChildren, leaving out the null and undefined kids */
    function fill(e, ...kids) { e.replaceChildren(...kids.filter((k) => k != null)); }
    function pad(n) { return String(n).padStart(2, "0"); }
    function fmtTime(t) {
        if (t == null) return "never";
        const d = new Date(t * 1000);
        return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    }
    function fmtAge(s) {
        if (s == null) return "never";
        s = Math.max(0, Math.floor(s));
        if (s < 60) return `${s} s`;
        if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
        if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
        return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
    }
    function fmtBytes(b) {
        if (b == null) return "";
        const u = ["B", "KiB", "MiB", "GiB", "TiB"];
        let i = 0;
        while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
        return `${i ? b.toFixed(1) : b} ${u[i]}`;
    }
    function now() { return Date.now() / 1000; }

    /* Run one command; resolves (never rejects) with {ok, code, out, err, problem}. */
    function run(argv, opts) {
        const o = Object.assign({ superuser: "try", err: "message" }, opts || {});
        const input = o.input;
        delete o.input;
        return new Promise((resolve) => {
            let proc;
            try {
                proc = cockpit.spawn(argv, o);
            } catch (ex) {
                resolve({ ok: false, code: null, out: "", err: String(ex), problem: "internal-error" });
                return;
            }
            proc.done((out) => resolve({ ok: true, code: 0, out: out || "", err: "" }))
                .fail((ex, out) => resolve({
                    ok: false, code: ex.exit_status == null ? null : ex.exit_status, problem: ex.problem || null,
                    out: out || "", err: (ex.message || String(ex)).trim(),
                }));
            if (input != null) proc.input(input);
        });
    }
    /* Run one command and call onLine for each line of its output as it comes; resolves like run(). */
    function runStream(argv, opts, onLine) {
        const o = Object.assign({ superuser: "require", err: "out" }, opts || {});
        return new Promise((resolve) => {
            let buf = "", all = "";
            const proc = cockpit.spawn(argv, o);
            proc.stream((data) => {
                all += data;
                buf += data;
                let i;
                while ((i = buf.indexOf("\n")) >= 0) {
                    const line = buf.slice(0, i);
                    buf = buf.slice(i + 1);
                    onLine(line);
                }
            });
            const end = (ok, ex) => {
                if (buf) { onLine(buf); buf = ""; }
                resolve({ ok, code: ok ? 0 : (ex && ex.exit_status != null ? ex.exit_status : null),
                          problem: ex ? ex.problem || null : null, out: all, err: ex ? (ex.message || String(ex)) : "" });
            };
            proc.done(() => end(true)).fail((ex) => end(false, ex));
        });
    }
    function parseJSON(text) { try { return JSON.parse(text); } catch (e) { return null; } }
    function problemWords(r) {
        if (r.problem === "not-found") return "the command is not installed on this host";
        if (r.problem === "access-denied") return "this needs administrative access";
        const lines = (r.err || r.out || "").split("\n").map((l) => l.trim()).filter(Boolean);
        return lines.length ? lines[lines.length - 1] : `exit ${r.code}`;    // the command's last word, not a trace
    }

    // ------------------------------------------------------------------ access (superuser or not)
    function applyAccess() {
        document.body.classList.toggle("readonly", !H.admin);
        const limited = H.status && H.status.limited;
        setText("access", H.admin ? "" : "Read-only: you do not have administrative access, so this page shows the " +
            "status and no action. Turn administrative access on in Cockpit's top bar to change the settings or act." +
            (limited ? ` The status is its public part (no messages nor paths), as of ${fmtTime(H.status.written)}.` : ""));
        for (const e of document.querySelectorAll("#settings-form input, #settings-form select")) e.disabled = !H.admin;
        if (H.status) tabsFor(H.status);
    }

    /* The tabs that make sense on this side, for this user: without administrative access, the dashboard only. */
    function tabsFor(st) {
        const isMaster = st.role === "master";
        const show = { dashboard: true, settings: H.admin, history: H.admin, held: H.admin && isMaster,
                       takeover: H.admin && (st.role === "slave" || !!st.promote) };
        for (const b of document.querySelectorAll(".tab")) b.hidden = !show[b.dataset.tab];
        if (!show[H.tab]) showTab("dashboard");
    }

    // ------------------------------------------------------------------ tabs
    function showTab(name) {
        const btn = document.querySelector(`.tab[data-tab="${name}"]`);
        if (!btn || btn.hidden) name = "dashboard";
        H.tab = name;
        for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
        for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== name;
        if (name === "settings" && !H.busy) loadSettings();
        if (name === "history") loadHistory();
        if (name === "held") loadHeldLog();
        if (name === "takeover") loadPlan();
        if (window.location.hash.slice(1) !== name) history.replaceState(null, "", "#" + name);
    }

    // ------------------------------------------------------------------ dashboard
    async function refresh() {
        if (H.refreshing) return;
        H.refreshing = true;
        try {
            const r = await run(["hotsync", "status", "--json"]);
            const st = r.ok ? parseJSON(r.out) : null;
            if (!st) {
                renderStatusError(problemWords(r));
                return;
            }
            H.status = st;
            H.fetchedAt = now();
            renderStatus(st);
            const lastEnd = (st.last_run || {}).end || null;
            if (lastEnd !== H.lastRunSeen) {            // a new run: the chart and the held view follow
                H.lastRunSeen = lastEnd;
                loadChart();
                if (H.tab === "held") loadHeldLog();
            }
            loadDumps();
        } finally {
            H.refreshing = false;
            document.body.classList.remove("loading");
            setText("refreshed", `refreshed ${fmtTime(now())}, every ${REFRESH_MS / 1000} s`);
        }
    }

    function renderStatusError(msg) {
        setText("d-health", "unknown");
        $("d-health").className = "badge";
        const ul = $("d-reasons");
        fill(ul, el("li", { class: "error-text", text: `hotsync status: ${msg}` }));
    }

    function badge(id, text, cls) {
        const e = $(id);
        e.textContent = text;
        e.className = "badge " + (cls || "");
    }

    function renderStatus(st) {
        const role = st.role || "not set";
        const fenced = st.status === "fenced";
        const health = st.health || { state: "unknown", reasons: [] };
        badge("host-role", fenced ? `${role}: FENCED` : role, fenced ? "fenced" : role);
        badge("host-health", health.state.toUpperCase(), health.state);
        badge("d-health", health.state.toUpperCase(), health.state);
        fill($("d-reasons"), ...(health.reasons || []).map((r) => el("li", { text: r })));
        setText("d-role", role);
        setText("d-status", st.status);
        setText("d-peer", st.peer || "not configured");
        setText("d-epoch", st.epoch);
        // pinned certificates
        setText("d-fp", st.fingerprint || "none yet (the save event makes it)");
        if (st.role === "slave") {
            setText("d-peer-fp-label", "master (MasterFingerprint)");
            setText("d-peer-fp", st.master_fingerprint || "not set");
            setText("d-pairing", `pairing: ${st.pairing || "?"}` + (st.master_presented && st.master_presented !== st.peer_fingerprint
                ? `; a master presented ${st.master_presented}` : ""));
        } else {
            setText("d-peer-fp-label", "slave (pinned)");
            setText("d-peer-fp", st.peer_fingerprint || "none yet: the first push, by a person");
            setText("d-pairing", st.awaiting_person ? `WAITING: ${st.awaiting_person}` : "");
        }
        // runs
        const last = st.last_run;
        if (last) {
            const counts = st.role === "master" ? `, ${last.files || 0} files, ${fmtBytes(last.bytes || 0)}` : `, rsync exit ${last.exit_status}`;
            fill($("d-last-run"), el("span", {}, el("span", { class: `badge ${last.result}`, text: last.result }),
                ` ${fmtTime(last.start)}, ${((last.end || last.start) - last.start).toFixed(1)} s${counts}`,
                last.message ? el("div", { class: "sub", text: last.message }) : null));
        } else setText("d-last-run", "never");
        setText("d-last-success", st.last_success ? fmtTime(st.last_success.end) : "never");
        $("d-next-label").hidden = $("d-next").hidden = st.role !== "master";
        setText("d-next", st.next_run ? fmtTime(st.next_run) : "not scheduled");
        setText("d-running", st.running ? `since ${fmtTime(st.running.start)}` + (st.running.pid ? ` (pid ${st.running.pid})` : "") : "no");
        setText("d-last-error", !st.last_error ? "none" : `${fmtTime(st.last_error.time)}: ` +
            (st.last_error.message || "(the message is root's: hotsync status with administrative access)"));
        // real-time notifier
        const rt = st.realtime;
        const rows = [];
        const add = (k, v) => rows.push(el("dt", { text: k }), el("dd", { text: v }));
        if (!rt) {
            add("notifier", st.role === "master" ? (st.realtime_wanted ? "enabled, has not run yet" : "not running (real-time disabled or not due)")
                : "runs on the master");
        } else {
            add("notifier", rt.alive ? `running (pid ${rt.pid})` : "not running");
            add("queued paths", rt.queued_paths || 0);
            const lp = rt.last_push || {};
            add("last push", lp.at ? `${fmtTime(lp.at)}, ${lp.ok ? "ok" : "FAILED"}` : "never");
            const lo = rt.last_ok || {};
            add("last ok", lo.at ? fmtTime(lo.at) : "never");
            if (rt.failing_for != null) add("failing for", `${rt.failing_for} s: ${rt.last_error || ""}`);
        }
        fill($("d-realtime"), ...rows);
        // kept aside (a re-paired old master)
        const kept = st.kept || [];
        $("card-kept").hidden = !kept.length;
        fill($("d-kept"), ...kept.map((k) => el("li", { text: `${k.path}: ${k.files} files, ${fmtTime(k.time)}` })));
        // the banner: fenced, promoted, waiting
        const banner = $("banner");
        banner.className = "";
        if (fenced) {
            const f = st.fenced || {};
            banner.textContent = `FENCED since ${fmtTime(f.time)}: ${f.message || "this master's slave was promoted"}`;
            banner.hidden = false;
        } else if (st.status_error) {
            banner.textContent = st.status_error;
            banner.hidden = false;
        } else if (st.role === "master" && st.last_run && st.last_run.result === "held") {
            banner.className = "warn";
            banner.textContent = "A push is held back by the deletion guard: see Held pushes.";
            banner.hidden = false;
        } else banner.hidden = true;
        const isMaster = st.role === "master";
        const held = isMaster && st.last_run && st.last_run.result === "held";
        $("held-count").hidden = !held;
        setText("held-count", held ? "1" : "");
        renderHeld(st);
        tick();
        applyAccess();
    }

    /* The RPO counts up every second between two refreshes. */
    function tick() {
        const st = H.status;
        if (!st) return;
        const age = st.copy_age == null ? null : st.copy_age + (now() - H.fetchedAt);
        const e = $("d-rpo");
        e.textContent = age == null ? "no copy yet" : fmtAge(age);
        e.dataset.seconds = age == null ? "" : String(Math.floor(age));
        const ok = st.last_success ? st.last_success.end : null;
        setText("d-rpo-since", ok ? `the data of ${fmtTime(ok)}` + (st.role === "master" ? " is on the slave" : " is here") : "");
        if (H.plan && $("t-age")) {
            const a = H.plan.assessment;
            if (a && a.data_age != null) {
                const tAge = a.data_age + (now() - H.plan.fetchedAt);
                $("t-age").textContent = fmtAge(tAge);
                $("t-age").dataset.seconds = String(Math.floor(tAge));
            }
        }
    }

    async function loadDumps() {
        const r = await run(["hotsync", "dumps", "--json"]);
        const box = $("d-dbs");
        const d = r.ok ? parseJSON(r.out) : null;
        if (!d) { fill(box, el("p", { class: "error-text", text: problemWords(r) })); return; }
        const kids = [];
        if (!d.enabled) kids.push(el("p", { text: "disabled: no dump is taken before a push" }));
        if (d.error) kids.push(el("p", { class: "error-text", text: d.error }));
        if (!d.dumps.length) kids.push(el("p", { class: "sub", text: "no database dumps on this host (no active plugin declares one)" }));
        const slave = H.status && H.status.role === "slave";
        for (const x of d.dumps) {
            kids.push(el("div", {}, el("strong", { text: x.name }), ` (${x.plugin}): `,
                x.exists ? `${slave ? "replica lags" : "taken"} ${fmtAge(x.age)}${slave ? "" : " ago"}, ${fmtBytes(x.size)}` : "not taken yet"));
        }
        fill(box, ...kids);
    }

    async function loadChart() {
        const r = await run(["hotsync", "log", "--json", "--last", "100"]);
        const entries = r.ok ? parseJSON(r.out) : null;
        const box = $("chart");
        if (!entries) { fill(box, el("p", { class: "error-text", text: problemWords(r) })); return; }
        H.log = entries;
        setText("chart-caption", entries.length ? `(${entries.length} runs from the sync log, ${fmtTime(entries[0].start)} to ${fmtTime(entries[entries.length - 1].start)})` : "");
        if (!entries.length) {
            fill(box, el("p", { class: "sub", text: H.status && H.status.role === "slave"
                ? "the sync log is the master's: this host has none (its received pushes are in Runs above)" : "no run in the sync log yet" }));
            return;
        }
        fill(box, drawChart(entries));
    }

    function drawChart(entries) {
        const NS = "http://www.w3.org/2000/svg";
        const W = 1000, left = 70, right = 10, rowH = 56, gap = 14;
        const rows = [
            { key: "duration", label: "duration", fmt: (v) => `${v.toFixed(1)} s` },
            { key: "files", label: "files", fmt: (v) => String(v) },
            { key: "bytes", label: "bytes", fmt: fmtBytes },
        ];
        const Hh = rows.length * (rowH + gap) + 16;
        const svg = document.createElementNS(NS, "svg");
        svg.setAttribute("viewBox", `0 0 ${W} ${Hh}`);
        svg.setAttribute("id", "runs-chart");
        const mk = (tag, attrs, txt) => {
            const e = document.createElementNS(NS, tag);
            for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
            if (txt != null) e.textContent = txt;
            svg.append(e);
            return e;
        };
        const n = 100, slot = (W - left - right) / n, bw = Math.max(2, slot * 0.75);
        const offset = n - entries.length;           // the newest run is at the right
        rows.forEach((row, ri) => {
            const y0 = ri * (rowH + gap) + 8;
            const vals = entries.map((e) => e[row.key] == null ? 0 : e[row.key]);
            const max = Math.max(...vals, row.key === "duration" ? 1 : 1);
            mk("text", { x: 0, y: y0 + 10 }, row.label);
            mk("text", { x: 0, y: y0 + 24 }, `max ${row.fmt(max)}`);
            mk("line", { x1: left, x2: W - right, y1: y0 + rowH, y2: y0 + rowH });
            entries.forEach((e, i) => {
                const v = vals[i];
                const h = Math.max(v > 0 ? 2 : 1, (v / max) * rowH);
                const cls = ["success", "held", "failed"].includes(e.result) ? e.result : "other";
                const rect = mk("rect", { x: left + (offset + i) * slot, y: y0 + rowH - h, width: bw, height: h,
                                          class: `bar ${cls}`, "data-result": e.result });
                const t = document.createElementNS(NS, "title");
                t.textContent = `${e.time} ${e.result}: ${e.duration.toFixed(1)} s, ${e.files == null ? "?" : e.files} files, ` +
                    `${e.bytes == null ? "?" : fmtBytes(e.bytes)}\n${e.message}`;
                rect.append(t);
            });
        });
        return svg;
    }

    // ------------------------------------------------------------------ settings
    const FIELDS = ["role", "SlaveHost", "MasterHost", "MasterFingerprint", "databases", "realtime", "interval",
                    "MaxDeletePercent", "MailTo"];

    /* The form from `config printjson hotsync`. Only the newest load applies; a load the page started by
       itself (opening the tab) never overwrites what the user typed since (H.edited); Reset and a save do. */
    async function loadSettings(overwrite) {
        const seq = ++H.formSeq;
        const r = await run(["config", "printjson", "hotsync"]);
        if (seq !== H.formSeq) return;
        const d = r.ok ? parseJSON(r.out) : null;
        if (!d) { setText("save-result", `config printjson: ${problemWords(r)}`); return; }
        H.settings = d.props || {};
        if (H.edited && overwrite !== true) return;
        for (const p of FIELDS) {
            const input = $(`f-${p}`);
            if (input) input.value = H.settings[p] == null ? "" : H.settings[p];
        }
        $("f-password").value = $("f-password2").value = "";
        H.edited = false;
        clearErrors();
        roleFields();
        if (!Object.keys(H.info).length) {              // the schema's own words under each field
            const ri = await run(["config", "info", "--json", "hotsync"]);
            const info = ri.ok ? parseJSON(ri.out) : null;
            const props = info && (info.props || info);
            if (props && typeof props === "object") {
                for (const p of FIELDS) {
                    const x = Array.isArray(props) ? props.find((i) => i.prop === p) : props[p];
                    if (x) H.info[p] = x;
                }
            }
            for (const p of FIELDS) {
                const help = document.querySelector(`.field[data-prop="${p}"] .help`);
                const x = H.info[p];
                if (help && x) help.textContent = [x.description, x.allowed ? `allowed: ${x.allowed}` : "",
                    x.default !== undefined && x.default !== "" ? `default ${x.default}` : ""].filter(Boolean).join(" — ");
            }
        }
    }

    function roleFields() {
        const role = $("f-role").value;
        for (const f of document.querySelectorAll(".field[data-role]")) f.hidden = f.dataset.role !== role;
    }

    function clearErrors() {
        for (const f of document.querySelectorAll(".field")) {
            f.classList.remove("invalid");
            f.querySelector(".error").textContent = "";
        }
        setText("save-result", "");
    }

    function fieldError(prop, msg) {
        const f = document.querySelector(`.field[data-prop="${prop}"]`) || document.querySelector('.field[data-prop="role"]');
        f.classList.add("invalid");
        f.querySelector(".error").textContent = msg;
    }

    async function saveSettings(ev) {
        ev.preventDefault();
        if (!H.admin || H.busy) return;
        clearErrors();
        const pw = $("f-password").value, pw2 = $("f-password2").value;
        if (pw !== pw2) { fieldError("password2", "the two passwords differ"); return; }
        const args = [];
        const role = $("f-role").value;
        for (const p of FIELDS) {
            const f = document.querySelector(`.field[data-prop="${p}"]`);
            if (f.dataset.role && f.dataset.role !== role) continue;
            const v = $(`f-${p}`).value;
            if ((H.settings[p] == null ? "" : H.settings[p]) !== v) args.push(p, v);
        }
        if (!args.length && !pw) { setText("save-result", "nothing changed"); return; }
        H.busy = true;
        $("save").disabled = true;
        try {
            if (args.length) {
                setText("save-result", "config setprop hotsync …");
                const r = await run(["config", "setprop", "hotsync", ...args], { superuser: "require" });
                if (!r.ok) { showRefusal(r, "hotsync"); return; }
            }
            if (pw) {
                setText("save-result", "config setprop rsyncd password - …");
                const r = await run(["config", "setprop", "rsyncd", "password", "-"], { superuser: "require", input: pw + "\n" });
                if (!r.ok) { showRefusal(r, "rsyncd"); return; }
            }
            setText("save-result", "saved; applying…");
            const ok = await saveEvent($("event-steps"), $("event-result"), $("event-progress"));
            setText("save-result", ok ? "saved and applied" : "saved; the save event failed (see below)");
            await loadSettings(true);
            refresh();
        } finally {
            H.busy = false;
            $("save").disabled = false;
        }
    }

    /* config's refusal, under the field it names: "config: refused configuration hotsync interval='x': allowed is ..." */
    function showRefusal(r, key) {
        const msg = (r.err || r.out || "").split("\n").filter(Boolean).join("\n") || problemWords(r);
        const m = msg.match(/refused configuration \S+ (\w+)=/) || msg.match(/'(\w+)'/);
        let prop = m ? m[1] : null;
        if (key === "rsyncd") prop = "password";
        fieldError(prop && document.querySelector(`.field[data-prop="${prop}"]`) ? prop : "role", msg.replace(/^config: /, ""));
        setText("save-result", "nothing was changed");
    }

    /* signal-event --json EVENT, each action's progress in *list*; resolves true when it succeeded. */
    async function saveEvent(list, result, box, event) {
        event = event || "nethserver-hotsync-save";
        box.hidden = false;
        fill(list);
        result.textContent = "";
        const rows = {};
        let final = null;
        const r = await runStream(["signal-event", "--json", event], { err: "message" }, (line) => {
            const o = parseJSON(line);
            if (!o) return;
            if (o.step != null) {
                let li = rows[o.step];
                if (!li) { li = rows[o.step] = el("li", { "data-action": o.action }); list.append(li); }
                const state = o.state === "running" ? "running" : (o.status || o.state);
                fill(li, el("span", { class: `state ${state}`, text: state }), ` ${o.action}`,
                    o.time != null ? el("span", { class: "sub", text: ` (${Number(o.time).toFixed(2)} s)` }) : null,
                    o.reason ? el("div", { class: "sub", text: o.reason }) : null);
            } else if (o.status) final = o;
        });
        const ok = r.ok && final && final.status === "success";
        result.textContent = final ? `${event}: ${final.status.toUpperCase()}` + (final.failed && final.failed.length
            ? ` (failed: ${final.failed.join(", ")})` : "") + ` in ${Number(final.time).toFixed(1)} s`
            : `${event}: ${problemWords(r)}`;
        result.className = ok ? "" : "error-text";
        return ok;
    }

    // ------------------------------------------------------------------ held pushes
    function renderHeld(st) {
        const last = st.last_run || {};
        const held = st.role === "master" && last.result === "held";
        $("held-one").hidden = !held;
        $("held-none").textContent = held ? "" : (st.role === "master"
            ? `No push is held back: the last run was ${last.result || "never"}${last.end ? " at " + fmtTime(last.end) : ""}.`
            : "Held pushes are the master's: this host is not one.");
        if (!held) return;
        const err = st.last_error || {};
        setText("held-message", last.message);
        setText("held-when", `held at ${fmtTime(last.end)}`);
        const paths = err.details || [];
        setText("held-n", `${last.deleted || paths.length} files` + (paths.length < (last.deleted || 0) ? `, the first ${paths.length} listed` : ""));
        const key = paths.join("\n");
        if ($("held-list").dataset.key !== key) {
            $("held-list").dataset.key = key;
            fill($("held-list"), ...paths.map((p) => el("li", { text: p })));
        }
        setText("held-expect", String(last.deleted || paths.length));
        checkHeldConfirm();
    }

    function checkHeldConfirm() {
        $("held-release").disabled = H.busy || $("held-confirm").value.trim() !== $("held-expect").textContent;
    }

    async function releaseHeld() {
        if (!H.admin || H.busy) return;
        H.busy = true;
        $("held-release").disabled = true;
        const out = $("held-output");
        out.hidden = false;
        out.textContent = "$ hotsync sync --allow-deletions\n";
        const r = await runStream(["hotsync", "sync", "--allow-deletions", "--no-wait"], {}, (line) => { out.textContent += line + "\n"; });
        out.textContent += r.ok ? "\n(done)\n" : `\n(exit ${r.code == null ? r.problem : r.code})\n`;
        $("held-confirm").value = "";
        H.busy = false;
        await refresh();
        loadHeldLog();
    }

    async function loadHeldLog() {
        const r = await run(["hotsync", "log", "--json", "--result", "held", "--last", "20"]);
        const entries = r.ok ? parseJSON(r.out) : null;
        const body = $("held-log").tBodies[0];
        if (!entries) { fill(body, el("tr", {}, el("td", { colspan: 3, class: "error-text", text: problemWords(r) }))); return; }
        fill(body, ...entries.reverse().map((e) => el("tr", {},
            el("td", { class: "time", text: e.time }), el("td", { text: e.message }),
            el("td", {}, el("details", {}, el("summary", { text: `${e.details.length} paths` }), el("pre", { text: e.details.join("\n") }))))));
    }

    // ------------------------------------------------------------------ history and logs
    async function loadHistory() {
        const [a, b, c] = await Promise.all([
            run(["config", "history", "hotsync", "--json"]),
            run(["config", "history", "rsyncd", "--json"]),
            run(["hotsync", "log", "--json", "--last", "0"]),
        ]);
        const body = $("h-config").tBodies[0];
        const rows = [...(a.ok ? parseJSON(a.out) || [] : []), ...(b.ok ? parseJSON(b.out) || [] : [])];
        rows.sort((x, y) => y.time - x.time);
        if (!a.ok) fill(body, el("tr", {}, el("td", { colspan: 4, class: "error-text", text: `config history: ${problemWords(a)}` })));
        else fill(body, ...rows.map((h) => el("tr", {},
            el("td", { class: "time", text: fmtTime(h.time) }), el("td", { text: `${h.user || "?"}(${h.uid})` }),
            el("td", {}, `${h.key} ${h.prop}: `, el("code", { text: h.old == null ? "(none)" : h.old }), " → ",
               el("code", { text: h.new == null ? "(removed)" : h.new })),
            el("td", {}, el("code", { text: h.command || "" }), h.source ? ` (${h.source})` : ""))));
        const sbody = $("h-sync").tBodies[0];
        const entries = c.ok ? parseJSON(c.out) : null;
        if (!entries) fill(sbody, el("tr", {}, el("td", { colspan: 6, class: "error-text", text: problemWords(c) })));
        else fill(sbody, ...entries.reverse().map((e) => {
            const tr = el("tr", { "data-result": e.result },
                el("td", { class: "time", text: e.time }), el("td", {}, el("span", { class: `badge ${e.result}`, text: e.result })),
                el("td", { class: "num", text: `${e.duration.toFixed(1)} s` }), el("td", { class: "num", text: e.files == null ? "" : e.files }),
                el("td", { class: "num", text: fmtBytes(e.bytes) }),
                el("td", {}, e.message, e.details.length ? el("details", {}, el("summary", { text: `${e.details.length} details` }),
                    el("pre", { text: e.details.join("\n") })) : null));
            return tr;
        }));
        filterHistory();
    }

    function filterHistory() {
        const q = $("h-filter").value.trim().toLowerCase();
        const res = $("h-result").value;
        for (const tr of $("h-config").tBodies[0].rows) tr.hidden = !!q && !tr.textContent.toLowerCase().includes(q);
        for (const tr of $("h-sync").tBodies[0].rows) {
            tr.hidden = (!!q && !tr.textContent.toLowerCase().includes(q)) || (!!res && tr.dataset.result !== res);
        }
    }

    // ------------------------------------------------------------------ takeover
    async function loadPlan() {
        if (H.busy) return;
        const st = H.status || {};
        if (!H.hostname) {
            const h = await run(["hostname"]);
            H.hostname = (h.out || "").trim();
            setText("t-host", H.hostname);
        }
        if (st.role !== "slave") {
            $("t-plan").hidden = true;
            $("t-notslave").hidden = false;
            $("t-notslave").textContent = st.promote
                ? `This host was promoted to master at ${fmtTime(st.promote.time)} (pair epoch ${st.promote.epoch}).`
                : "This host is not a slave: the takeover runs on the slave.";
            if (st.promote) showAfter(st.promote.old_master || (st.fence || {}).old_master, st.promote);
            return;
        }
        $("t-notslave").hidden = true;
        const r = await run(["hotsync-promote", "--dry-run", "--json"]);
        const plan = parseJSON(r.out);
        if (!plan) {
            $("t-plan").hidden = false;
            fill($("t-refusals"), el("p", { class: "error-text", text: `hotsync-promote --dry-run: ${problemWords(r)}` }));
            return;
        }
        plan.fetchedAt = now();
        H.plan = plan;
        renderPlan(plan);
    }

    function renderPlan(plan) {
        const a = plan.assessment || {};
        $("t-plan").hidden = false;
        setText("t-last-complete", fmtTime(a.last_complete_sync));
        const lr = a.last_received;
        setText("t-last-received", lr ? `${lr.result === "success" ? "COMPLETED" : (lr.result || "?").toUpperCase()}, ` +
            `${fmtTime(lr.start)} → ${fmtTime(lr.end)} (${lr.kind || "push"}, rsync exit ${lr.exit_status})` : "none");
        setText("t-receiving", (a.receiving || []).length ? `${a.receiving.length} arriving now` : "none");
        setText("t-contact", a.last_contact ? `${fmtAge(a.contact_age)} ago (alive-window ${fmtAge(a.window)})` : "never");
        setText("t-epoch", `${a.epoch} → ${a.next_epoch}`);
        setText("t-lost", a.last_complete_sync ? `What the master wrote after ${fmtTime(a.last_complete_sync)} is not here: ` +
            "it is lost to this host (RPO)." : "This host never received a complete sync.");
        // the database replicas' own dry run: where each would take over, its lag, what would be lost
        const reps = plan.replicas || [];
        $("t-replicas").hidden = !reps.length;
        fill($("t-replicas"), ...reps.map((line) => el("li", { class: /FAILED|cannot tell/.test(line) ? "error-text" : null,
            text: line })));
        const box = $("t-refusals");
        const refusals = a.refusals || [];
        const kids = [];
        for (const x of refusals) {
            kids.push(el("div", { class: `refusal${x.force ? " force" : ""}`, "data-why": x.why },
                el("strong", { text: x.force ? "Refused unless forced: " : "Refused: " }), x.text,
                x.force ? el("div", { class: "sub", text: "--force overrides this: use it only when you know the old master is down " +
                    "(switched off, unplugged). If it is alive, its users keep writing there while this host takes writes too (split brain); " +
                    "its pushes are refused from the promote on, but what they write is lost to this host." }) : null));
        }
        if (!refusals.length) kids.push(el("p", { text: "No refusal: the copy is complete and the master is silent." }));
        for (const w of a.warnings || []) kids.push(el("p", { class: "sub", text: `warning: ${w}` }));
        fill(box, ...kids);
        const hard = refusals.filter((x) => !x.force);
        const soft = refusals.filter((x) => x.force);
        $("t-force-row").hidden = !soft.length;
        $("t-confirm").hidden = !!hard.length;
        const dumps = (a.dumps || []).map((d) => d.name).join(", ") || "none";
        const steps = (a.steps || []).map((s) => s.name).join(", ") || "none";
        fill($("t-phases"), ...PHASES.map((p) => el("li", { "data-phase": p }, PHASE_WORDS[p] +
            (p === "databases" ? ` (${dumps})` : p === "steps" ? ` (${steps})` : p === "fence" ? ` (${a.epoch} → ${a.next_epoch})` : ""))));
        checkPromoteConfirm();
        tick();
    }

    function checkPromoteConfirm() {
        const plan = H.plan;
        const refusals = plan ? (plan.assessment.refusals || []) : [];
        const hard = refusals.some((x) => !x.force), soft = refusals.some((x) => x.force);
        $("t-promote").disabled = H.busy || !plan || hard || (soft && !$("t-force").checked) ||
            !H.hostname || $("t-confirm-name").value.trim() !== H.hostname;
    }

    async function promote() {
        if (!H.admin || H.busy) return;
        H.busy = true;
        checkPromoteConfirm();
        const force = $("t-force").checked;
        $("t-plan").hidden = true;
        $("t-run").hidden = false;
        const prog = $("t-progress"), logbox = $("t-log");
        const items = {};
        fill(prog, ...PHASES.map((p) => {
            const li = items[p] = el("li", { "data-phase": p }, el("span", { class: "state pending", text: "pending" }), ` ${PHASE_WORDS[p]}`);
            return li;
        }));
        const setPhase = (p, state, extra) => {
            const li = items[p];
            if (!li) return;
            li.firstChild.className = `state ${state}`;
            li.firstChild.textContent = state;
            if (extra) li.append(el("span", { class: "sub", text: ` (${extra})` }));
        };
        let current = "verify";
        setPhase("verify", "running");
        let json = null, inJson = false;
        const argv = ["hotsync-promote", "--yes", "--json"].concat(force ? ["--force"] : []);
        logbox.textContent = `$ ${argv.join(" ")}\n`;
        const phaseOf = (line) => {
            const m = line.match(/^(fence|config|databases?|role|services|promote step)\b/);
            if (!m) return null;
            return m[1] === "database" ? "databases" : m[1] === "promote step" ? "steps" : m[1];
        };
        const r = await runStream(argv, {}, (line) => {
            if (line === "{") { inJson = true; json = ""; }
            if (inJson) { json += line + "\n"; return; }
            logbox.textContent += line + "\n";
            const p = phaseOf(line);
            if (p && p !== current) {
                for (const q of PHASES.slice(0, PHASES.indexOf(p))) if (items[q].firstChild.textContent !== "done") setPhase(q, "done");
                current = p;
                setPhase(p, "running");
            }
            if (/FAILED/.test(line) && p) setPhase(p, "failed");
        });
        const res = json ? parseJSON(json) : null;
        const j = res && res.journal;
        if (j) {
            for (const p of PHASES) {
                const t = (j.timings || {})[p];
                if ((j.done || {})[p]) setPhase(p, items[p].firstChild.textContent === "failed" ? "failed" : "done", t != null ? `${t.toFixed(2)} s` : null);
            }
        }
        const promoted = res && res.promoted;
        const result = $("t-result");
        result.textContent = promoted ? `PROMOTED: this host is the master now (pair epoch ${((j || {}).record || {}).epoch}).`
            : `Not promoted: ${res ? res.message : problemWords(r)}`;
        result.className = promoted ? "" : "error-text";
        H.busy = false;
        await refresh();
        if (promoted) showAfter(((j || {}).record || {}).old_master, (j || {}).record);
        else { $("t-plan").hidden = false; loadPlan(); }
    }

    function showAfter(oldMaster, record) {
        $("t-after").hidden = false;
        for (const e of document.querySelectorAll(".old-master")) e.textContent = oldMaster || "the old master";
        setText("t-promoted", record ? `Promoted at ${fmtTime(record.time)} with the data of ${fmtTime(record.last_complete_sync)}` +
            ` (pair epoch ${record.epoch}${record.forced ? ", --force" : ""}).` : "");
        H.oldMaster = oldMaster;
    }

    async function postRestore() {
        if (!H.admin || H.busy) return;
        H.busy = true;
        const box = $("t-post-restore-steps");
        await saveEvent(box, box, box, "post-restore-data");
        H.busy = false;
    }

    async function repair() {
        if (!H.admin || H.busy || !H.oldMaster) return;
        H.busy = true;
        const box = $("t-repair-steps");
        fill(box, el("li", { text: `config setprop hotsync SlaveHost ${H.oldMaster} MasterHost ''` }));
        const r = await run(["config", "setprop", "hotsync", "SlaveHost", H.oldMaster, "MasterHost", ""], { superuser: "require" });
        if (!r.ok) box.append(el("li", { class: "error-text", text: r.err }));
        else {
            const holder = el("li", {});
            const list = el("ol", { class: "steps" });
            const res = el("p", {});
            holder.append(list, res);
            box.append(holder);
            await saveEvent(list, res, holder);
        }
        H.busy = false;
        refresh();
    }

    async function firstPush() {
        if (!H.admin || H.busy) return;
        const fp = $("t-first-fp").value.trim();
        if (!fp) return;
        H.busy = true;
        const out = $("t-first-output");
        out.hidden = false;
        out.textContent = `$ hotsync sync --accept-fingerprint ${fp}\n`;
        const r = await runStream(["hotsync", "sync", "--accept-fingerprint", fp, "--no-wait"], {}, (l) => { out.textContent += l + "\n"; });
        out.textContent += r.ok ? "\n(done)\n" : `\n(exit ${r.code == null ? r.problem : r.code})\n`;
        H.busy = false;
        refresh();
    }

    // ------------------------------------------------------------------ start
    function start() {
        for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
        $("settings-form").addEventListener("submit", saveSettings);
        $("settings-reset").addEventListener("click", () => loadSettings(true));
        for (const kind of ["input", "change"]) $("settings-form").addEventListener(kind, () => { H.edited = true; });
        $("f-role").addEventListener("change", roleFields);
        $("held-confirm").addEventListener("input", checkHeldConfirm);
        $("held-release").addEventListener("click", releaseHeld);
        $("h-filter").addEventListener("input", filterHistory);
        $("h-result").addEventListener("change", filterHistory);
        $("t-confirm-name").addEventListener("input", checkPromoteConfirm);
        $("t-force").addEventListener("change", checkPromoteConfirm);
        $("t-promote").addEventListener("click", promote);
        $("t-post-restore").addEventListener("click", postRestore);
        $("t-repair").addEventListener("click", repair);
        $("t-first-push").addEventListener("click", firstPush);

        const perm = cockpit.permission({ admin: true });
        const onPerm = () => { H.admin = perm.allowed === true; applyAccess(); };
        perm.addEventListener("changed", onPerm);
        onPerm();

        refresh().then(() => showTab(window.location.hash.slice(1) || "dashboard"));
        setInterval(refresh, REFRESH_MS);
        setInterval(tick, 1000);
        window.addEventListener("hashchange", () => showTab(window.location.hash.slice(1)));
    }

    document.addEventListener("DOMContentLoaded", start);
}());
