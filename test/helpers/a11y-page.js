// Runs inside a console page (Chromium): what a person using a keyboard, a screen reader or a
// laptop screen would trip over. Returns a list of problems: controls without an accessible name,
// text under 4.5:1 contrast against the first opaque background behind it, sideways scrolling.
// Plain JavaScript (evaluated in the page, not type-checked with Node's types).
() => {
    const out = [];
    const describe = (e) => `<${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.split(' ').join('.')}` : ''}> "${(e.textContent || '').trim().slice(0, 40)}"`;
    // Accessible name: aria-labelledby, aria-label, <label for>, a wrapping <label>, title; a button's own text.
    const nameOf = (e) => {
      const by = e.getAttribute('aria-labelledby');
      if (by) return by.split(/\s+/).map((id) => document.getElementById(id)?.textContent || '').join(' ').trim();
      const aria = e.getAttribute('aria-label');
      if (aria && aria.trim()) return aria.trim();
      const labels = e.labels;
      if (labels && labels.length) return [...labels].map((l) => l.textContent || '').join(' ').trim();
      if (e.title) return e.title;
      if (e.tagName === 'BUTTON' || e.tagName === 'A') return (e.textContent || '').trim();
      return '';
    };
    for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')) {
      if (!nameOf(e)) out.push(`no accessible name: ${describe(e)}`);
    }
    // Contrast of every element that holds text of its own, against the first opaque background behind it.
    const rgb = (c) => { const m = /rgba?\(([\d.]+), ([\d.]+), ([\d.]+)(?:, ([\d.]+))?\)/.exec(c); return m ? [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]] : null; };
    const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
    const background = (e) => {
      for (let x = e; x; x = x.parentElement) { const c = rgb(getComputedStyle(x).backgroundColor); if (c && c[3] > 0.5) return c; }
      return [255, 255, 255, 1];
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const e = n.parentElement;
      if (!e || seen.has(e) || !n.textContent?.trim()) continue;
      seen.add(e);
      const st = getComputedStyle(e);
      const box = e.getBoundingClientRect();
      if (st.visibility === 'hidden' || st.display === 'none' || box.width === 0 || box.right < 0 || box.left < -1000) continue;
      const fg = rgb(e instanceof SVGElement ? st.fill : st.color);
      if (!fg) continue;
      const l1 = lum(fg), l2 = lum(background(e));
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)}:1 < 4.5:1: ${describe(e)} (${st.color} on ${getComputedStyle(e).backgroundColor})`);
    }
    const doc = document.documentElement;
    if (doc.scrollWidth > doc.clientWidth + 1) out.push(`scrolls sideways: ${doc.scrollWidth} px wide in a ${doc.clientWidth} px window`);
    return out;
  }
