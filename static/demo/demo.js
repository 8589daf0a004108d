// The member demo app: a member's view of the loyalty program, built on the public API only.
//
// Everything here is what a tenant's own web or mobile app would do with a member token that
// its backend obtained (POST /api/v1/members/{memberRef}/token with the tenant's API key):
//
//   GET  /api/v1/me                      balance, pending and expiring points, tier and progress
//   GET  /api/v1/me/transfers            history, each entry with how it was computed
//   GET  /api/v1/me/insights             spending totals, change, top categories, tier projection
//   GET  /api/v1/me/recommendations      rewards affordable now, worth saving for, for expiring points
//   GET  /api/v1/catalog/search?q=       catalog search (GET /api/v1/catalog/items without a query)
//   POST /api/v1/redemptions             redeem, with a fresh Idempotency-Key per redemption
//   GET  /api/v1/redemptions/{id}        follow it until COMPLETED (the gift card code) or refunded
//   WS   /ws                             live frames, token as subprotocol ["bearer", token],
//                                        {"type": "resume", "after": lastEventId} on reconnect
//
// No framework and no build step: plain browser JavaScript, to read top to bottom.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const $ = (selector, root = document) => root.querySelector(selector);
  const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

  const numberFormat = new Intl.NumberFormat("en");
  const points = (n) => numberFormat.format(n);
  const money = (amount, currency = config.currency) =>
    new Intl.NumberFormat("en", { style: "currency", currency }).format(Number(amount));
  const dateFormat = new Intl.DateTimeFormat("en", { dateStyle: "medium" });
  const timeFormat = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short" });
  const day = (iso) => (iso ? dateFormat.format(new Date(iso)) : "");
  const when = (iso) => (iso ? timeFormat.format(new Date(iso)) : "");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Builds an element: el("li", {class: "x", dataset: {testid: "y"}}, "text", child, ...).
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Idempotency keys: crypto.randomUUID() where the page is a secure context (https or
  // localhost); elsewhere a v4 UUID from crypto.getRandomValues.
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // ---------------------------------------------------------------------------------------
  // The member token. The page starts with one; when the API answers 401 or the socket
  // closes with 4401 (expired), it asks its backend (here the demo backend) for a fresh one.

  let token = config.token;
  let tokenRefreshing = null;

  function tokenRefresh() {
    tokenRefreshing ??= (async () => {
      const response = await fetch(config.tokenUrl, {
        method: "POST",
        headers: { "X-CSRFToken": config.csrfToken },
        body: new URLSearchParams({ memberRef: config.memberRef }),
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`Could not renew the member token (${response.status}).`);
      token = (await response.json()).token;
    })().finally(() => {
      tokenRefreshing = null;
    });
    return tokenRefreshing;
  }

  // ---------------------------------------------------------------------------------------
  // The API client: JSON in and out, the member token on every call, errors in the API's one
  // shape {"type", "errors": [{"code", "detail", "attr"}], "requestId"} raised as ApiError.

  class ApiError extends Error {
    constructor(status, body) {
      const errors = (body && body.errors) || [];
      super(errors.map((e) => e.detail).join(" ") || `The API answered ${status}.`);
      this.status = status;
      this.code = errors[0] && errors[0].code;
      this.requestId = body && body.requestId;
    }
  }

  async function api(method, path, { body, headers = {}, renew = true } = {}) {
    const started = performance.now();
    let response;
    try {
      response = await fetch(config.apiBase + path, {
        method,
        headers: {
          Accept: "application/json",
          Authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      logCall(method, path, "network error", performance.now() - started);
      throw error;
    }
    logCall(method, path, response.status, performance.now() - started);
    if (response.status === 401 && renew) {
      await tokenRefresh();
      return api(method, path, { body, headers, renew: false });
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // A `next` link of a paginated answer is absolute; the client keeps its own base.
  const pathOf = (url) => {
    const parsed = new URL(url, location.href);
    return parsed.pathname.slice(config.apiBase.length) + parsed.search;
  };

  function logCall(method, path, status, ms) {
    const log = byTestId("api-log");
    log.prepend(el("li", {}, el("code", {}, `${method} ${config.apiBase}${path}`), ` → ${status} (${Math.round(ms)} ms)`));
    while (log.children.length > 50) log.lastChild.remove();
  }

  function showError(element, error) {
    element.hidden = false;
    element.textContent = error.requestId ? `${error.message} (request ${error.requestId})` : error.message;
  }

  // ---------------------------------------------------------------------------------------
  // Profile: balance, pending, expiring points, tier and progress to the next one.

  let balance = null;

  function balanceShow(value) {
    balance = value;
    const node = byTestId("balance");
    node.textContent = points(value);
    node.dataset.value = String(value);
    catalogAffordability();
  }

  async function profileLoad() {
    const errorBox = byTestId("profile-error");
    try {
      const me = await api("GET", "/me");
      errorBox.hidden = true;
      balanceShow(me.balance);
      byTestId("pending").textContent = me.pending
        ? `${points(me.pending)} points (spendable once the returns window closes)`
        : "None";
      const expiring = me.expiringSoon;
      byTestId("expiring").textContent = expiring.points
        ? `${points(expiring.points)} points within ${expiring.withinDays} days (first on ${day(expiring.firstExpiry)})`
        : `None in the next ${expiring.withinDays} days`;
      tierShow(me.tier);
    } catch (error) {
      showError(errorBox, error);
    }
  }

  function tierShow(tier) {
    const bar = byTestId("tier-progress");
    const label = byTestId("tier-progress-label");
    if (!tier) {
      byTestId("tier-name").textContent = "No tiers in this program";
      bar.hidden = true;
      label.textContent = "";
      return;
    }
    byTestId("tier-name").textContent = tier.name || "None yet";
    let percent = 100;
    if (tier.nextTier) {
      const next = tier.nextTier;
      percent = next.minPoints ? Math.min(100, Math.floor((100 * tier.qualifyingPoints) / next.minPoints)) : 100;
      label.textContent = `${points(tier.qualifyingPoints)} of ${points(next.minPoints)} qualifying points: ${points(next.pointsToGo)} to go to ${next.name}`;
    } else {
      label.textContent = `${points(tier.qualifyingPoints)} qualifying points: the top tier`;
    }
    if (tier.belowSince) label.textContent += ` (below this tier since ${day(tier.belowSince)}: earn to keep it)`;
    bar.setAttribute("aria-valuenow", String(percent));
    $(".bar", bar).style.width = `${percent}%`;
  }

  // ---------------------------------------------------------------------------------------
  // History, with the explanation the engine stored on each transfer.

  const KIND_LABELS = {
    EARN: "Earned",
    REVERSAL: "Refund reversal",
    ADJUSTMENT: "Adjustment",
    REDEMPTION: "Redeemed",
    REDEMPTION_REFUND: "Redemption refunded",
    EXPIRY: "Expired",
    PURCHASE: "Bought",
  };
  let historyNext = null;

  function explain(transfer) {
    const e = transfer.explanation || {};
    const parts = [];
    for (const line of e.lines || []) {
      const factors = [];
      if (line.categoryFactor && Number(line.categoryFactor) !== 1) factors.push(`×${Number(line.categoryFactor)} ${line.category}`);
      if (line.tierFactor && Number(line.tierFactor) !== 1) factors.push(`×${Number(line.tierFactor)} ${e.tier || "tier"}`);
      parts.push(`${money(line.amount)}${line.category ? ` on ${line.category}` : ""}${factors.length ? ` (${factors.join(", ")})` : ""}`);
    }
    if (e.basePoints !== undefined && (e.lines || []).length) parts.push(`${points(e.basePoints)} points`);
    if (e.actionCode) parts.push(`for ${e.actionCode}`);
    if (e.type === "redemption") {
      const discount = Number(e.discountPercentage || 0);
      parts.push(`${e.quantity} × ${points(e.unitPoints)} points${discount ? ` (${discount}% tier discount)` : ""}`);
    }
    if (e.tierBonusPoints) parts.push(`+${points(e.tierBonusPoints)} ${e.tier || "tier"} bonus`);
    for (const incentive of e.incentives || []) {
      if (incentive.points > 0) parts.push(`+${points(incentive.points)} ${incentive.name}`);
    }
    for (const cap of e.capsHit || []) parts.push(`capped: ${typeof cap === "string" ? cap : cap.detail || cap.scope || JSON.stringify(cap)}`);
    if (e.originalEventId) parts.push(`reverses purchase ${e.originalEventId}`);
    if (!parts.length && transfer.reason) parts.push(transfer.reason);
    return parts.join(" · ");
  }

  function transferRow(transfer) {
    const signed = transfer.points > 0 ? `+${points(transfer.points)}` : points(transfer.points);
    return el(
      "tr",
      { dataset: { testid: "history-row", kind: transfer.kind } },
      el("td", {}, when(transfer.createdAt)),
      el("td", {}, KIND_LABELS[transfer.kind] || transfer.kind, el("br"), el("small", { class: "muted" }, transfer.reason)),
      el("td", { class: `num ${transfer.points < 0 ? "minus" : "plus"}` }, signed),
      el(
        "td",
        {},
        el("span", { dataset: { testid: "history-explanation" } }, explain(transfer)),
        el("details", {}, el("summary", {}, "explanation"), el("pre", {}, JSON.stringify(transfer.explanation, null, 2)))
      )
    );
  }

  async function historyLoad({ more = false } = {}) {
    const body = byTestId("history");
    const button = byTestId("history-more");
    try {
      const page = await api("GET", more && historyNext ? pathOf(historyNext) : "/me/transfers?pageSize=10");
      if (!more) body.replaceChildren();
      body.append(...page.results.map(transferRow));
      if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No points yet.")));
      historyNext = page.next;
      button.hidden = !historyNext;
    } catch (error) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "error" }, error.message)));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Insights: what the member spent and earned, against the period before.

  function change(node, percent) {
    if (percent === null || percent === undefined) {
      node.textContent = "";
      return;
    }
    const value = Number(percent);
    node.textContent = `${value >= 0 ? "▲" : "▼"} ${Math.abs(value)}% vs the period before`;
    node.className = value >= 0 ? "plus" : "minus";
  }

  function shareRow(label, share, detail) {
    const width = Math.max(0, Math.min(100, Number(share)));
    return el(
      "li",
      {},
      el("span", { class: "label" }, label),
      el("span", { class: "share", "aria-hidden": "true" }, el("span", { style: `width:${width}%` })),
      el("span", { class: "value" }, detail)
    );
  }

  async function insightsLoad() {
    try {
      const insights = await api("GET", "/me/insights");
      const totals = insights.totals;
      byTestId("insights-spent").textContent = money(totals.amountSpent, insights.currency);
      byTestId("insights-count").textContent = points(totals.transactionCount);
      byTestId("insights-points").textContent = points(totals.pointsEarned);
      const changes = insights.change || {};
      change(byTestId("insights-spent-change"), changes.amountSpent);
      change(byTestId("insights-count-change"), changes.transactionCount);
      change(byTestId("insights-points-change"), changes.pointsEarned);
      byTestId("insights-period").textContent = `${day(insights.from)} – ${day(insights.to)}`;
      const categories = byTestId("insights-categories");
      categories.replaceChildren(
        ...insights.topCategories.map((c) => shareRow(c.name, c.share, `${money(c.amountSpent, insights.currency)} · ${c.share}%`))
      );
      if (!categories.children.length) categories.append(el("li", { class: "muted" }, "No purchases in this period."));
      const sources = totals.pointsBySource || {};
      const earned = Object.values(sources).reduce((a, b) => a + b, 0);
      byTestId("insights-sources").replaceChildren(
        ...Object.entries(sources).map(([source, n]) =>
          shareRow(source[0].toUpperCase() + source.slice(1), earned ? (100 * n) / earned : 0, `${points(n)} points`)
        )
      );
      const tier = insights.tier;
      byTestId("insights-projection").textContent =
        tier && tier.nextTier && tier.projectedDate
          ? `At ${tier.pointsPerDay} points a day you reach ${tier.nextTier.name || tier.nextTier.tierId} around ${day(tier.projectedDate)}.`
          : "";
    } catch (error) {
      byTestId("insights-period").textContent = error.message;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Recommendations, each with a Redeem button when the member can afford it.

  function miniItem(item, note) {
    return el(
      "li",
      { dataset: { testid: "recommended-item", itemId: item.itemId } },
      el("span", {}, el("span", { dir: "auto" }, item.name), el("br"), el("small", { class: "muted" }, note)),
      item.pointsNeeded === 0 ? redeemButton(item) : null
    );
  }

  async function recommendationsLoad() {
    try {
      const r = await api("GET", "/me/recommendations?limit=4");
      const cost = (i) => `${points(i.memberPointCost)} points · worth ${money(i.cashValue, i.currency || r.currency)}`;
      byTestId("affordable-now").replaceChildren(...r.affordableNow.map((i) => miniItem(i, cost(i))));
      byTestId("worth-saving-for").replaceChildren(
        ...r.worthSavingFor.map((i) => miniItem(i, `${points(i.pointsNeeded)} more points · ${cost(i)}`))
      );
      const expiring = r.expiringSoon;
      byTestId("expiring-summary").textContent = expiring.points
        ? `${points(expiring.points)} points expire by ${day(expiring.expiresAt)}; spend them on:`
        : `Nothing expires in the next ${expiring.withinDays} days.`;
      byTestId("expiring-items").replaceChildren(...expiring.items.map((i) => miniItem(i, cost(i))));
      for (const list of ["affordable-now", "worth-saving-for"]) {
        if (!byTestId(list).children.length) byTestId(list).append(el("li", { class: "muted" }, "Nothing here yet."));
      }
    } catch (error) {
      byTestId("affordable-now").replaceChildren(el("li", { class: "error" }, error.message));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Catalog search.

  let catalogQuery = "";

  function redeemButton(item) {
    return el(
      "button",
      {
        type: "button",
        dataset: { testid: "redeem", itemId: item.itemId, cost: String(item.memberPointCost) },
        "aria-label": `Redeem ${item.name} for ${points(item.memberPointCost)} points`,
        onclick: () => redeem(item),
      },
      "Redeem"
    );
  }

  function catalogCard(item) {
    const discounted = item.memberPointCost < item.pointCost;
    const stock = item.stockQuantity === null ? "" : item.inStock ? `${item.stockQuantity} left` : "Out of stock";
    return el(
      "li",
      { class: "item", dataset: { testid: "catalog-item", itemId: item.itemId, kind: item.kind } },
      item.imageUrl ? el("img", { src: item.imageUrl, alt: "", loading: "lazy", width: 160, height: 120 }) : null,
      el("h3", { dir: "auto" }, item.name),
      el("p", { class: "muted" }, [item.category && item.category.name, item.kind.replace("_", " ").toLowerCase(), stock].filter(Boolean).join(" · ")),
      el(
        "p",
        { class: "price" },
        discounted ? el("s", {}, points(item.pointCost)) : null,
        ` ${points(item.memberPointCost)} points`
      ),
      el("p", { class: "muted need", dataset: { testid: "points-needed" } }),
      item.inStock ? redeemButton(item) : null
    );
  }

  // Redeem buttons are enabled only when the balance covers the item.
  function catalogAffordability() {
    for (const button of document.querySelectorAll('[data-testid="redeem"]')) {
      const cost = Number(button.dataset.cost);
      const short = balance === null ? 0 : cost - balance;
      button.disabled = short > 0 || redeeming;
      const need = button.parentElement.querySelector('[data-testid="points-needed"]');
      if (need) need.textContent = short > 0 ? `${points(short)} more points needed` : "";
    }
  }

  async function catalogLoad(query = catalogQuery) {
    catalogQuery = query;
    const list = byTestId("catalog-results");
    const summary = byTestId("catalog-summary");
    const path = query
      ? `/catalog/search?q=${encodeURIComponent(query)}&pageSize=12`
      : "/catalog/items?pageSize=12&inStock=true";
    try {
      const page = await api("GET", path);
      list.replaceChildren(...page.results.map(catalogCard));
      const count = page.count ?? page.results.length;
      const rewards = `${points(count)} reward${count === 1 ? "" : "s"}`;
      summary.textContent = query ? `${rewards} for “${query}”` : `${rewards} in the catalog; search to narrow them down`;
      catalogAffordability();
    } catch (error) {
      list.replaceChildren();
      summary.textContent = error.message;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Redemption: one Idempotency-Key per redemption, reused if the request has to be sent
  // again (a network error, a 5xx, or 409 while the first attempt is still running), so it is
  // made once however often it is sent. Then follow it: REDEMPTION_STATUS frames on the
  // socket, and polling GET /redemptions/{id} in case the socket is down.

  const FINAL = new Set(["COMPLETED", "REFUNDED", "CANCELLED"]);
  const REFERENCE_LABELS = {
    giftCardCode: "Gift card code",
    digitalCode: "Code",
    shipmentReference: "Shipment",
    bookingReference: "Booking",
    creditReference: "Statement credit",
  };
  const STATUS_TEXT = {
    PENDING: "Requested: your points are reserved.",
    FULFILLING: "Being fulfilled by our partner…",
    COMPLETED: "Done! Enjoy your reward.",
    FAILED: "The partner could not fulfil it; your points are being refunded.",
    REFUNDED: "Not fulfilled: your points are back.",
    CANCELLED: "Cancelled: your points are back.",
  };
  let redeeming = false;
  let current = null; // the redemption being shown

  async function redeem(item) {
    if (redeeming) return;
    redeeming = true;
    catalogAffordability();
    const key = uuid();
    redemptionShow({ itemName: item.name, status: "SENDING" });
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const redemption = await api("POST", "/redemptions", {
            body: { itemId: item.itemId, quantity: 1 },
            headers: { "Idempotency-Key": key },
          });
          balanceShow(redemption.balance);
          redemptionShow(redemption);
          redemptionFollow(redemption.redemptionId);
          return;
        } catch (error) {
          const retry = !(error instanceof ApiError) || error.status >= 500 || error.code === "idempotency_key_in_flight";
          if (!retry || attempt >= 4) throw error;
          await sleep(400 * attempt);
        }
      }
    } catch (error) {
      redemptionShow({ itemName: item.name, status: "REFUSED", failureReason: error.message });
    } finally {
      redeeming = false;
      catalogAffordability();
    }
  }

  // Frames and polls may arrive out of order: a status never goes back to an earlier one.
  const RANK = { PENDING: 0, FULFILLING: 1, FAILED: 2, COMPLETED: 3, REFUNDED: 3, CANCELLED: 3 };

  function redemptionShow(r) {
    const panel = byTestId("redemption");
    panel.hidden = false;
    if (r.redemptionId && current && current.redemptionId === r.redemptionId) {
      if (RANK[r.status] < RANK[current.status]) return;
      r = { ...current, ...r };
    }
    current = r;
    byTestId("redemption-item").textContent = r.itemName || "";
    const status = byTestId("redemption-status");
    status.textContent = r.status === "SENDING" ? "Sending…" : r.status;
    status.dataset.status = r.status;
    byTestId("redemption-detail").textContent = r.failureReason || STATUS_TEXT[r.status] || "";
    const reference = $(".reference", panel);
    reference.hidden = !(r.status === "COMPLETED" && r.reference);
    if (!reference.hidden) {
      byTestId("redemption-reference-label").textContent = REFERENCE_LABELS[r.referenceKind] || "Reference";
      byTestId("redemption-reference").textContent = r.reference;
    }
  }

  async function redemptionFollow(id) {
    const deadline = Date.now() + 5 * 60 * 1000;
    let delay = 1000;
    while (Date.now() < deadline) {
      if (!current || current.redemptionId !== id || FINAL.has(current.status)) break;
      await sleep(delay);
      delay = Math.min(delay * 1.5, 5000);
      if (!current || current.redemptionId !== id || FINAL.has(current.status)) break;
      try {
        redemptionShow(await api("GET", `/redemptions/${id}`));
      } catch {
        // The next round tries again.
      }
    }
    refreshSoon();
  }

  // ---------------------------------------------------------------------------------------
  // Live notifications over the WebSocket. The token goes as subprotocol (never in the URL,
  // which proxies log). Each frame has an eventId: the client drops what it has seen (delivery
  // is at least once) and keeps the last one, so that after a reconnect — or a reload — it
  // asks for what it missed with {"type": "resume", "after": lastEventId}.

  const lastEventKey = `loyalty-demo:${config.tenantId}:${config.memberRef}:lastEventId`;
  let lastEventId = localStorage.getItem(lastEventKey);
  const seen = new Set();
  let socket = null;
  let reconnectDelay = 1000;
  let pingTimer = null;

  function wsStatus(state, text) {
    const node = byTestId("ws-status");
    node.dataset.state = state;
    node.textContent = text;
    document.body.dataset.ws = state;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    wsStatus("connecting", "Connecting…");
    socket = new WebSocket(`${scheme}//${location.host}${config.wsPath}`, ["bearer", token]);
    socket.addEventListener("message", (message) => frameReceived(JSON.parse(message.data)));
    socket.addEventListener("close", async (event) => {
      clearInterval(pingTimer);
      wsStatus("offline", "Offline, reconnecting…");
      if (event.code === 4401) {
        try {
          await tokenRefresh();
        } catch {
          // Try again after the delay.
        }
      }
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 30000);
    });
  }

  function frameReceived(frame) {
    switch (frame.type) {
      case "ready":
        reconnectDelay = 1000;
        wsStatus("live", "Live");
        if (lastEventId) socket.send(JSON.stringify({ type: "resume", after: lastEventId }));
        clearInterval(pingTimer);
        pingTimer = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), 25000);
        return;
      case "pong":
        return;
      case "error":
        if (frame.code === "notification_not_found") eventSeen(null); // the event is gone: start afresh
        return;
      default:
        if (!frame.eventId || seen.has(frame.eventId)) return;
        seen.add(frame.eventId);
        eventSeen(frame.eventId);
        notificationShow(frame);
        react(frame);
    }
  }

  function eventSeen(id) {
    lastEventId = id;
    if (id) localStorage.setItem(lastEventKey, id);
    else localStorage.removeItem(lastEventKey);
  }

  function describe(frame) {
    switch (frame.type) {
      case "INCENTIVE_NOTIFICATION": {
        const reward = frame.reward || {};
        const what = reward.currency === "POINTS" ? `${points(reward.amount)} points` : `${reward.amount} ${reward.currency}`;
        return { title: `You earned ${what}`, detail: "A campaign reward, just for you." };
      }
      case "POINTS_UPDATED": {
        const signed = frame.points > 0 ? `+${points(frame.points)}` : points(frame.points);
        const balanceNow = typeof frame.balance === "number" ? `balance ${points(frame.balance)}` : "";
        return { title: `${signed} points`, detail: [frame.reason, balanceNow].filter(Boolean).join(" · ") };
      }
      case "POINTS_EXPIRING":
        return { title: `${points(frame.points)} points expire soon`, detail: `on ${day(frame.expiresAt)}` };
      case "REDEMPTION_STATUS":
        return {
          title: `${frame.itemName || "Redemption"}: ${String(frame.status).toLowerCase()}`,
          detail: frame.reference ? `${REFERENCE_LABELS[frame.referenceKind] || "Reference"}: ${frame.reference}` : "",
        };
      case "TIER_CHANGED":
        return { title: "Your tier changed", detail: `now ${frame.tierId || "none"}` };
      default:
        return { title: frame.type, detail: "" };
    }
  }

  function notificationShow(frame) {
    const { title, detail } = describe(frame);
    byTestId("notifications-empty").hidden = true;
    const feed = byTestId("notifications");
    feed.prepend(
      el(
        "li",
        { class: `note ${frame.type.toLowerCase()}`, dataset: { testid: "notification", type: frame.type, eventId: frame.eventId } },
        el("strong", {}, title),
        detail ? el("span", {}, detail) : null,
        el("time", { datetime: new Date().toISOString() }, new Date().toLocaleTimeString("en"))
      )
    );
    while (feed.children.length > 30) feed.lastChild.remove();
  }

  // What a frame changes on screen: the balance at once, the rest re-read shortly.
  function react(frame) {
    if (frame.type === "POINTS_UPDATED" && typeof frame.balance === "number") balanceShow(frame.balance);
    if (frame.type === "REDEMPTION_STATUS" && current && current.redemptionId === frame.redemptionId) {
      redemptionShow({ ...frame, itemName: frame.itemName || current.itemName });
    }
    refreshSoon();
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      profileLoad();
      historyLoad();
      recommendationsLoad();
    }, 600);
  }

  // ---------------------------------------------------------------------------------------

  byTestId("catalog-search").addEventListener("submit", (event) => {
    event.preventDefault();
    catalogLoad(new FormData(event.target).get("q").trim());
  });
  byTestId("history-more").addEventListener("click", () => historyLoad({ more: true }));

  connect();
  profileLoad().then(() => catalogLoad());
  historyLoad();
  insightsLoad();
  recommendationsLoad();
})();
