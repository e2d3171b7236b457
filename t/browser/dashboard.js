'use strict';

/*
 * Drives Debian's chromium (puppeteer-core) through /dashboard for
 * t/dashboard.t and writes what it saw as one JSON document: the page's
 * DOM at each step, the API answers the page itself received (read from
 * the browser's responses), the test's own reads of the same moment (from
 * a location that is not tracked, so that they add nothing), every request
 * the pages made, console messages, page errors and CSP violations.  It
 * asserts nothing: t/dashboard.t does, and fails on a missing step.
 *
 *   node t/browser/dashboard.js CONFIG.json
 *
 * CONFIG: { modules, chromium, profile, base, fresh, keyed, keys: { admin,
 * client, wrong }, clientEntity, entity, custom: { since, until }, shots,
 * out, pidFile, deadline (ms) }.  Every wait is bounded; at the deadline
 * the browser is stopped and what was seen so far is written, with
 * "error".  The exit status is 0 when every step ran.
 */

const fs = require('fs');
const http = require('http');
const path = require('path');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const puppeteer = require(path.join(cfg.modules, 'puppeteer-core'));

const started = Date.now();
const out = {
	steps: {}, requests: [], console: [], pageErrors: [], csp: [],
	timeouts: [], log: [], done: false
};
const answers = [];             /* the API's: { label, url, status, body }, by request */
const pending = new WeakMap();  /* request -> its entry in answers */
const bodies = [];              /* promises of their bodies */
let browser = null;
let written = false;

const S = out.steps;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (what) => out.log.push((Date.now() - started) + ' ms: ' + what);
const late = (what) => { out.timeouts.push(what); log('late: ' + what); };

function write() {
	if (!written) {
		written = true;
		fs.writeFileSync(cfg.out, JSON.stringify(out, null, 1));
	}
}

const watchdog = setTimeout(() => {
	out.error = 'deadline of ' + cfg.deadline + ' ms passed';
	log(out.error);
	write();
	/* TERM lets chromium remove its files; KILL if it does not go */
	const proc = browser && browser.process();
	if (!proc || proc.exitCode !== null) {
		process.exit(1);
	}
	proc.on('exit', () => process.exit(1));
	proc.kill('SIGTERM');
	setTimeout(() => { proc.kill('SIGKILL'); process.exit(1); }, 2000);
}, cfg.deadline);

/* ---- waits, all bounded --------------------------------------------- */

/* a condition in the page: true, or false (and noted) at the timeout */
async function until(page, what, fn, timeout, ...args) {
	try {
		await page.waitForFunction(fn, { timeout: timeout || 5000, polling: 25 }, ...args);
		return true;
	} catch (e) {
		late(what + ': ' + e.message.split('\n')[0]);
		return false;
	}
}

/* every request's answer is in, with its body */
async function settle(what) {
	const end = Date.now() + 3000;
	while (answers.some((a) => a.status === null)) {
		if (Date.now() > end) {
			late('answers ' + what + ': '
				+ answers.filter((a) => a.status === null).length + ' missing');
			break;
		}
		await sleep(10);
	}
	await Promise.all(bodies);
}

/* no request of the page in flight for 60 ms, answers in */
async function quiet(st, what) {
	const end = Date.now() + 5000;
	while (st.inflight || Date.now() - st.last < 60) {
		if (Date.now() > end) {
			late('quiet ' + what + ': ' + st.inflight + ' requests in flight');
			break;
		}
		await sleep(10);
	}
	await settle(what);
}

/* pause the updates as a round ends: then no request is in flight, and
 * the page shows the answers of its last round */
async function pauseAfterRound(page, what) {
	const ok = await page.evaluate(() => new Promise((resolve) => {
		const mo = new MutationObserver(() => {
			mo.disconnect();
			const b = document.getElementById('pause');
			if (b.getAttribute('aria-pressed') !== 'true') {
				b.click();
			}
			resolve(true);
		});
		mo.observe(document.body, { attributes: true, attributeFilter: ['data-refreshes'] });
		setTimeout(() => { mo.disconnect(); resolve(false); }, 5000);
	}));
	if (!ok) {
		late(what + ': no round ended in 5 s');
	}
	await settle(what);
}

/* a node the page drops when it draws again; redrawn: it did */
function mark(page, sel) {
	return page.evaluate((sel) => { window.__usageMark = document.querySelector(sel); }, sel);
}

function redrawn(page, what, sel) {
	return until(page, what + ': redrawn', (sel) => {
		const n = document.querySelector(sel);
		return n !== null && n !== window.__usageMark;
	}, 5000, sel);
}

/* ---- what the pages did --------------------------------------------- */

/* the answer to the page's last request that passes test (a URL) */
function received(label, test, from) {
	for (let i = answers.length - 1; i >= (from || 0); i--) {
		if (answers[i].label === label && test(new URL(answers[i].url))) {
			return answers[i];
		}
	}
	return null;
}

const statuses = (label, from) =>
	answers.slice(from).filter((a) => a.label === label).map((a) => a.status);

/* the test's own read of the API, where it is not tracked */
function fresh(p) {
	return new Promise((resolve, reject) => {
		const req = http.get(cfg.fresh + p, { timeout: 5000 }, (r) => {
			let text = '';
			r.setEncoding('utf8');
			r.on('data', (c) => { text += c; });
			r.on('end', () => {
				try {
					resolve(JSON.parse(text));
				} catch (e) {
					reject(new Error(p + ': not JSON: ' + text.slice(0, 200)));
				}
			});
		});
		req.on('timeout', () => req.destroy(new Error(p + ': no answer in 5 s')));
		req.on('error', reject);
	});
}

/* every event of a page that the test looks at, under a label */
async function watch(page, label, origin) {
	const st = { intercept: false, hold: null, held: [], inflight: 0, last: Date.now() };
	const over = new WeakSet();

	function done(r) {
		if (over.has(r)) {
			return;
		}
		over.add(r);
		st.inflight--;
		st.last = Date.now();
		const a = pending.get(r);
		if (a && a.status === null) {
			a.status = r.response() ? r.response().status() : 0;
		}
	}

	page.on('requestfinished', done);
	page.on('requestfailed', done);
	page.on('request', (r) => {
		st.inflight++;
		st.last = Date.now();
		out.requests.push({ label, origin, url: r.url(), method: r.method(),
			type: r.resourceType(), key: r.headers()['x-api-key'] || null });
		/* the API's answers in the order of their requests: the page
		 * draws the answer of its last request, whenever it comes */
		if (new URL(r.url()).pathname.startsWith('/v1/')) {
			const a = { label, url: r.url(), status: null, body: null };
			answers.push(a);
			pending.set(r, a);
		}
		if (st.intercept) {
			if (st.hold && st.hold(r.url())) {
				st.held.push(r);
			} else {
				r.continue();
			}
		}
	});
	page.on('response', (r) => {
		const a = pending.get(r.request());
		if (!a) {
			return;
		}
		a.status = r.status();
		/* the page reads no 401's body (it asks for the key): the browser
		 * never finishes one, so it is over with its header */
		if (a.status === 401) {
			done(r.request());
			return;
		}
		let timer;
		bodies.push(Promise.race([r.text(), new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error('no body after 3 s')), 3000);
		})]).finally(() => clearTimeout(timer)).then((text) => {
			try {
				a.body = JSON.parse(text);
			} catch (e) {
				a.body = text;
			}
		}, (e) => late('body of ' + a.status + ' ' + a.url + ': ' + e.message)));
	});
	page.on('console', (m) => {
		out.console.push({ label, type: m.type(), text: m.text(),
			url: (m.location() || {}).url || null });
		if (/Content.Security.Policy/i.test(m.text())) {
			out.csp.push({ label, from: 'console', text: m.text() });
		}
	});
	page.on('pageerror', (e) => {
		out.pageErrors.push({ label, message: String(e && e.message || e) });
	});
	await page.exposeFunction('__usageCsp', (v) => {
		out.csp.push(Object.assign({ label, from: 'event' }, v));
	});
	await page.evaluateOnNewDocument(() => {
		document.addEventListener('securitypolicyviolation', (e) => {
			window.__usageCsp({ directive: e.violatedDirective, blocked: e.blockedURI,
				sample: e.sample });
		});
	});
	await page.setViewport({ width: 1280, height: 900 });
	return st;
}

async function open(page, url) {
	const res = await page.goto(url, { waitUntil: 'load', timeout: 10000 });
	return { status: res.status(), csp: res.headers()['content-security-policy'] || null };
}

async function shot(page, name) {
	try {
		await page.screenshot({ path: path.join(cfg.shots, name + '.png'), fullPage: true });
	} catch (e) {
		late('screenshot ' + name + ': ' + e.message);
	}
}

/* ---- what a page shows, read in it ---------------------------------- */

function snapStore() {
	const $ = (id) => document.getElementById(id);
	const rows = (sel) => Array.from(document.querySelectorAll(sel + ' tbody tr'), (tr) => ({
		t: tr.getAttribute('data-t'), entity: tr.getAttribute('data-entity'),
		current: tr.getAttribute('aria-current'),
		cells: Array.from(tr.cells, (td) => td.textContent)
	}));
	const pts = (cls) => Array.from(document.querySelectorAll('#minutes-chart circle.pt.' + cls),
		(c) => [c.getAttribute('data-t'), Number(c.getAttribute('data-count'))]);
	const tiles = {};
	document.querySelectorAll('#tiles .tile').forEach((t) => {
		const dd = t.querySelector('dd'), small = dd.querySelector('small');
		tiles[t.getAttribute('data-tile')] = { value: dd.getAttribute('data-value'),
			text: dd.firstChild ? dd.firstChild.textContent : '',
			sub: small ? small.textContent : null };
	});
	const empty = document.querySelector('#minutes-chart text.empty');
	return {
		state: document.body.getAttribute('data-state'),
		status: $('status').textContent,
		tilesState: $('tiles').getAttribute('data-state'),
		tilesNote: $('tiles-note').hidden ? null : $('tiles-note').textContent,
		tiles,
		all: pts('all'),
		self: pts('self'),
		lines: Array.from(document.querySelectorAll('#minutes-chart polyline'),
			(l) => [l.getAttribute('class'), l.getAttribute('points').split(' ').length]),
		minutesEmpty: empty ? empty.textContent : null,
		minutes: rows('#minutes-table'),
		sort: $('entities-sort').value,
		entities: rows('#entities-table'),
		markup: document.querySelectorAll('#entities-table tbody :is(b, img)').length
	};
}

function snapEntity() {
	const $ = (id) => document.getElementById(id);
	const rows = (sel) => Array.from(document.querySelectorAll(sel + ' tbody tr'), (tr) => ({
		t: tr.getAttribute('data-t'), type: tr.getAttribute('data-type'),
		cells: Array.from(tr.cells, (td) => td.textContent)
	}));
	const s = $('entity');
	return {
		state: s.getAttribute('data-state'),
		entity: s.getAttribute('data-entity'),
		interval: s.getAttribute('data-interval'),
		name: $('entity-name').textContent,
		shown: getComputedStyle(s.querySelector('.when-chosen')).display !== 'none',
		controls: { interval: $('interval').value, range: $('range').value,
			since: $('since').value, until: $('until').value },
		total: [$('summary-total').getAttribute('data-value'), $('summary-total').textContent],
		value: [$('summary-value').getAttribute('data-value'), $('summary-value').textContent],
		summary: rows('#summary-table'),
		history: rows('#history-table'),
		bars: Array.from(document.querySelectorAll('#history-chart rect.bar'),
			(b) => [b.getAttribute('data-t'), Number(b.getAttribute('data-count'))]),
		current: Array.from(document.querySelectorAll('#entities-table tr[aria-current="true"]'),
			(tr) => tr.getAttribute('data-entity'))
	};
}

/* the colours that carry text and lines, as the browser computed them */
function snapColours() {
	const c = (sel, prop) => {
		const e = document.querySelector(sel);
		return e ? getComputedStyle(e)[prop] : null;
	};
	return {
		scheme: matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light',
		bg: c('body', 'backgroundColor'), fg: c('body', 'color'),
		tileBg: c('.tile', 'backgroundColor'), tileValue: c('.tile dd', 'color'),
		tileName: c('.tile dt', 'color'), status: c('#status', 'color'),
		th: c('#entities-table th', 'color'), thBg: c('#entities-table th', 'backgroundColor'),
		link: c('button.entity', 'color'),
		chartBg: c('#minutes-chart', 'backgroundColor'),
		axis: c('#minutes-chart text.axis', 'fill'),
		lineAll: c('#minutes-chart polyline.all', 'stroke'),
		lineSelf: c('#minutes-chart polyline.self', 'stroke'),
		bar: c('#history-chart rect.bar', 'fill')
	};
}

const focused = () => document.activeElement && document.activeElement.getAttribute('data-entity');
const isEntity = (u) => /^\/v1\/usage\/(?!stats$)[^/]+(\/history)?$/.test(u.pathname);
const isHistory = (u) => u.pathname.endsWith('/history');

/* a change of the entity's section by the user (act): what the page shows
 * once it drew it, and the answers it drew (all: no change, the last
 * answers of all) */
async function entityStep(page, label, name, act, all) {
	const from = all ? 0 : answers.length;
	const rows = '#summary-table tbody tr';
	if (!all) {
		await mark(page, rows);
	}
	await act();
	if (!all) {
		await redrawn(page, name, rows);
	}
	await until(page, name + ': entity ready',
		() => document.getElementById('entity').getAttribute('data-state') === 'ready');
	await settle(name);
	S[name] = {
		at: Date.now(),
		dom: await page.evaluate(snapEntity),
		summary: received(label, (u) => isEntity(u) && !isHistory(u), from),
		history: received(label, (u) => isEntity(u) && isHistory(u), from)
	};
	log(name);
}

async function storeStep(page, label, name) {
	await settle(name);
	S[name] = {
		at: Date.now(),
		dom: await page.evaluate(snapStore),
		stats: received(label, (u) => u.pathname === '/v1/usage/stats'),
		self: received(label, (u) => u.pathname === '/v1/usage/api-self/history'),
		entities: received(label, (u) => u.pathname === '/v1/entities')
	};
	log(name);
}

/* ---- the runs ------------------------------------------------------- */

async function light() {
	const L = 'light', page = await browser.newPage();
	const st = await watch(page, L, cfg.base);
	const rounds = () => page.evaluate(() => Number(document.body.getAttribute('data-refreshes')));
	await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

	S.freshBefore = await fresh('/v1/usage/stats');
	S.page = await open(page, cfg.base + '/dashboard?refresh=500');
	await until(page, 'light: first round', () => document.body.getAttribute('data-state')
		=== 'ready' && Number(document.body.getAttribute('data-refreshes')) >= 1, 8000);
	/* refreshed by itself, then paused */
	S.refreshed = await until(page, 'light: second round',
		() => Number(document.body.getAttribute('data-refreshes')) >= 2);
	await pauseAfterRound(page, 'pause');
	S.paused = await page.evaluate(() => ({
		pressed: document.getElementById('pause').getAttribute('aria-pressed'),
		status: document.getElementById('status').textContent }));
	await storeStep(page, L, 'store');
	S.freshAfter = await fresh('/v1/usage/stats');
	S.freshEvents = await fresh('/v1/entities?limit=20&sort=events');

	/* the ranking by value and back */
	const firstRow = '#entities-table tbody tr';
	for (const [sort, name] of [['value', 'byValue'], ['events', 'byEvents']]) {
		await mark(page, firstRow);
		await page.select('#entities-sort', sort);
		await redrawn(page, 'sort ' + sort, firstRow);
		await storeStep(page, L, name);
	}

	/* value asked, its answer held back; then events: when the answer of
	 * value comes, the ranking must stay the one of events */
	await page.setRequestInterception(true);
	st.intercept = true;
	st.hold = (u) => u.includes('/v1/entities') && u.includes('sort=value');
	const slow = page.waitForResponse((r) => r.url().includes('sort=value'), { timeout: 5000 });
	const fast = page.waitForResponse((r) => r.url().includes('sort=events'), { timeout: 5000 });
	await page.select('#entities-sort', 'value');
	for (let i = 0; i < 100 && !st.held.length; i++) {
		await sleep(20);
	}
	S.raceHeld = st.held.length;
	await mark(page, firstRow);
	await page.select('#entities-sort', 'events');
	await fast.catch((e) => late('race, events: ' + e.message));
	await redrawn(page, 'race: events', firstRow);
	S.raceBefore = await page.evaluate(snapStore);
	st.hold = null;
	st.held.splice(0).forEach((r) => r.continue());
	await slow.catch((e) => late('race, value: ' + e.message));
	await quiet(st, 'race');
	st.intercept = false;
	await page.setRequestInterception(false);
	await storeStep(page, L, 'race');

	/* the entity by keyboard: Tab from the ranking's select to its
	 * button, Enter */
	const order = S.race.dom.entities.map((r) => r.entity);
	const at = order.indexOf(cfg.entity);
	const focus = [];
	await page.focus('#entities-sort');
	for (let i = 0; i <= at; i++) {
		await page.keyboard.press('Tab');
		focus.push(await page.evaluate(focused));
	}
	S.tabbed = { order, at, focus };
	await entityStep(page, L, 'chosen', () => page.keyboard.press('Enter'));
	await shot(page, 'light');
	S.colours = await page.evaluate(snapColours);

	/* the periodic rounds with an entity chosen: never "loading", and the
	 * focus stays on its button across the ranking's redraws */
	await page.evaluate(() => {
		const s = document.getElementById('entity');
		window.__entityStates = [];
		new MutationObserver(() => window.__entityStates.push(s.getAttribute('data-state')))
			.observe(s, { attributes: true, attributeFilter: ['data-state'] });
		/* resumed as a click would, the focus left where it is */
		document.getElementById('pause').click();
	});
	S.rounds = await until(page, 'light: two rounds with an entity',
		(n) => Number(document.body.getAttribute('data-refreshes')) >= n + 2, 6000,
		await rounds());
	S.roundStates = await page.evaluate(() => window.__entityStates);
	S.roundFocus = await page.evaluate(focused);
	await pauseAfterRound(page, 'pause again');
	await entityStep(page, L, 'afterRounds', async () => {}, true);

	/* the interval by keyboard (hour, ArrowDown: day), then every
	 * interval and range by the select */
	await page.focus('#interval');
	await entityStep(page, L, 'day', () => page.keyboard.press('ArrowDown'));
	for (const [name, id, v] of [['minute', 'interval', 'minute'], ['range1h', 'range', '1h'],
		['hour1h', 'interval', 'hour'], ['range7d', 'range', '7d'],
		['day7d', 'interval', 'day'], ['rangeAll', 'range', 'all'],
		['minuteAll', 'interval', 'minute'], ['hourAll', 'interval', 'hour'],
		['custom', 'range', 'custom']])
	{
		await entityStep(page, L, name, () => page.select('#' + id, v));
	}
	/* from and to as a user sets them, a change each */
	await entityStep(page, L, 'fromTo', () => page.evaluate((c) => {
		for (const id of ['since', 'until']) {
			const i = document.getElementById(id);
			i.value = c[id];
			i.dispatchEvent(new Event('input', { bubbles: true }));
			i.dispatchEvent(new Event('change', { bubbles: true }));
		}
	}, cfg.custom));
	await entityStep(page, L, 'fromToMinute', () => page.select('#interval', 'minute'));
	await page.close();
}

async function dark() {
	const D = 'dark', page = await browser.newPage();
	const st = await watch(page, D, cfg.base);
	await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
	await open(page, cfg.base + '/dashboard?refresh=60000');
	await until(page, 'dark: first round',
		() => document.body.getAttribute('data-state') === 'ready', 8000);
	await quiet(st, 'dark');

	/* the skip link: first in the tab order, then the ranking's select */
	await page.keyboard.press('Tab');
	const first = await page.evaluate(() => document.activeElement.className);
	await page.keyboard.press('Enter');
	await page.keyboard.press('Tab');
	S.skip = { first, after: await page.evaluate(() => document.activeElement.id) };

	await entityStep(page, D, 'darkChosen', () =>
		page.click('#entities-table button.entity[data-entity="' + cfg.entity + '"]'));
	S.darkColours = await page.evaluate(snapColours);
	await storeStep(page, D, 'darkStore');
	await shot(page, 'dark');
	await page.close();
}

const keyState = (page) => page.evaluate(() => ({
	state: document.body.getAttribute('data-state'),
	form: !document.getElementById('key-form').hidden,
	focus: document.activeElement && document.activeElement.id,
	header: document.getElementById('key-header').textContent,
	error: document.getElementById('key-error').textContent,
	stored: sessionStorage.getItem('usage-dashboard-key') }));

const keyForm = (page, what) => until(page, what + ': the key form',
	() => document.body.getAttribute('data-state') === 'key'
		&& !document.getElementById('key-form').hidden);

const ready = (page, what, tiles) => until(page, what,
	(tiles) => document.body.getAttribute('data-state') === 'ready'
		&& (!tiles || document.getElementById('tiles').getAttribute('data-state') === tiles),
	5000, tiles);

async function enterKey(page, key) {
	await page.type('#key-input', key);
	await page.keyboard.press('Enter');
}

async function keys() {
	const K = 'keys', url = cfg.keyed + '/dashboard?refresh=60000';
	const ctx = await browser.createBrowserContext();
	let page = await ctx.newPage();
	let st = await watch(page, K, cfg.keyed);
	S.keyPage = await open(page, url);
	S.keyAsked = await keyForm(page, 'keys: first');
	await quiet(st, 'keys first');
	S.keyFirst = await keyState(page);
	await shot(page, 'keys-form');

	/* a wrong key: refused, said so, asked again */
	let from = answers.length;
	await enterKey(page, cfg.keys.wrong);
	await until(page, 'keys: the wrong key refused', () =>
		document.body.getAttribute('data-state') === 'key'
		&& !document.getElementById('key-form').hidden
		&& document.getElementById('key-error').textContent !== '');
	await quiet(st, 'wrong key');
	S.keyWrong = await keyState(page);
	S.keyWrongAnswers = statuses(K, from);

	/* the admin key: the data, kept for the tab */
	from = answers.length;
	await enterKey(page, cfg.keys.admin);
	await ready(page, 'keys: admin data', 'ready');
	await quiet(st, 'admin');
	S.keyAdmin = await keyState(page);
	await storeStep(page, K, 'keyAdminStore');
	S.keyAdminAnswers = statuses(K, from);
	await shot(page, 'keys-admin');

	from = answers.length;
	await page.reload({ waitUntil: 'load', timeout: 10000 });
	await ready(page, 'keys: reload');
	await quiet(st, 'reload');
	S.keyReload = await keyState(page);
	S.keyReloadAnswers = statuses(K, from);
	await page.close();

	/* a new tab of the same browser context: no key */
	page = await ctx.newPage();
	st = await watch(page, K, cfg.keyed);
	await open(page, url);
	await keyForm(page, 'keys: new tab');
	await quiet(st, 'new tab');
	S.keyNewTab = await keyState(page);
	await page.close();
	await ctx.close();

	/* a new context, a client key: its entity, no store-wide figures */
	const ctx2 = await browser.createBrowserContext();
	page = await ctx2.newPage();
	st = await watch(page, K, cfg.keyed);
	await open(page, url);
	await keyForm(page, 'keys: new context');
	await quiet(st, 'new context');
	S.keyNewContext = await keyState(page);
	await enterKey(page, cfg.keys.client);
	await ready(page, 'keys: client data', 'forbidden');
	await quiet(st, 'client');
	S.keyClient = await keyState(page);
	await storeStep(page, K, 'keyClientStore');
	await entityStep(page, K, 'keyClientEntity', () =>
		page.click('#entities-table button.entity[data-entity="' + cfg.clientEntity + '"]'));
	await shot(page, 'keys-client');
	await page.close();
	await ctx2.close();
}

/*
 * The detectors themselves: the dashboard made to read another origin and
 * to show an image from it.  Its CSP must refuse both, and this run must
 * see that (the test looks at this label alone for it).
 */
async function probe() {
	const page = await browser.newPage();
	const st = await watch(page, 'probe', cfg.base);
	await open(page, cfg.base + '/dashboard?refresh=60000');
	await page.evaluate((other) => {
		fetch(other + '/health').catch(() => {});
		new Image().src = other + '/probe.png';
	}, cfg.fresh);
	for (let i = 0; i < 100; i++) {
		if (out.csp.filter((c) => c.label === 'probe' && c.from === 'event').length >= 2) {
			break;
		}
		await sleep(20);
	}
	await quiet(st, 'probe');
	await page.close();
}

(async () => {
	try {
		browser = await puppeteer.launch({
			executablePath: cfg.chromium,
			headless: true,
			/* as root chromium runs only without its sandbox */
			args: ['--no-sandbox', '--no-first-run', '--disable-gpu'],
			userDataDir: cfg.profile,
			timeout: 15000,
			protocolTimeout: 15000
		});
		fs.writeFileSync(cfg.pidFile, String(browser.process().pid));
		out.version = await browser.version();
		log('launched ' + out.version);
		await light();
		await dark();
		await keys();
		await probe();
		out.done = true;
	} catch (e) {
		out.error = String(e && e.stack || e);
		log('error: ' + out.error);
	} finally {
		await Promise.all(bodies);
		if (browser) {
			await browser.close().catch(() => {
				if (browser.process()) {
					browser.process().kill('SIGKILL');
				}
			});
		}
		clearTimeout(watchdog);
		write();
		process.exitCode = out.done ? 0 : 1;
	}
})();
