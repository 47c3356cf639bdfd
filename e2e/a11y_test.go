package e2e_test

import (
	"fmt"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The checks here read the page as a person would see it: colours from
// getComputedStyle, composited over the backgrounds of the ancestors, so
// that a change to app.css that makes something hard to read fails the
// test that looks at it.

// wcagJS defines window.wcag: the WCAG 2 contrast ratio of two computed
// colours, and the colour an element sits on (its ancestors' backgrounds
// composited, from the page's canvas up).
const wcagJS = `window.wcag = (() => {
	const parse = (c) => {
		const m = /rgba?\(([^)]*)\)/.exec(c);
		if (!m) throw new Error('unexpected colour ' + c);
		const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
		return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
	};
	const over = (top, under) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat(1); };
	const lum = (c) => { const l = c.slice(0, 3).map(v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
		return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]; };
	const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
	// background: what shows behind e's content (e's own background included).
	const background = (e) => {
		const chain = [];
		for (let n = e; n && n.nodeType === 1; n = n.parentElement) chain.push(n);
		const canvas = matchMedia('(prefers-color-scheme: dark)').matches ? [18, 18, 18, 1] : [255, 255, 255, 1];
		return chain.reverse().reduce((under, n) => over(parse(getComputedStyle(n).backgroundColor), under), canvas);
	};
	const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : '') +
		' "' + (e.textContent || e.placeholder || '').trim().replace(/\s+/g, ' ').slice(0, 30) + '"';
	const fmt = (c) => 'rgb(' + c.slice(0, 3).map(Math.round).join(',') + ')';
	const visible = (e) => {
		if (!e.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
		const r = e.getBoundingClientRect();
		return r.width > 1 && r.height > 1; // not visually hidden (.sr-only)
	};

	const under = (sel) => [...document.querySelectorAll(sel)].flatMap(r => [r, ...r.querySelectorAll('*')]);

	// contrast lists what is shown in the elements sel selects below WCAG AA: text below
	// 4.5:1 (3:1 when large: 24px, or 18.66px bold), placeholders likewise,
	// and text fields and buttons whose boundary is below 3:1 against what
	// they sit on. Disabled controls are exempt, as WCAG says.
	const contrast = (sel) => {
		const out = [];
		const text = (e, color, bg) => {
			const s = getComputedStyle(e), size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
			const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
			const fg = over(parse(color), bg), r = ratio(fg, bg);
			if (r < need) out.push(name(e) + ': ' + fmt(fg) + ' on ' + fmt(bg) + ' is ' + r.toFixed(2) + ':1, needs ' + need);
		};
		for (const e of under(sel)) {
			if (!visible(e) || e.closest(':disabled')) continue;
			const ownText = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
			if (ownText || (e.matches('input, select') && e.value)) text(e, getComputedStyle(e).color, background(e));
			if (e.matches('input[placeholder]') && !e.value) text(e, getComputedStyle(e, '::placeholder').color, background(e));
			if (e.matches('input:not([type=checkbox]):not([type=file]), select, button')) {
				const s = getComputedStyle(e), around = background(e.parentElement);
				const fill = over(parse(s.backgroundColor), around), border = over(parse(s.borderTopColor), around);
				const best = Math.max(ratio(fill, around), parseFloat(s.borderTopWidth) > 0 ? ratio(border, around) : 1);
				if (best < 3) out.push(name(e) + ': its boundary (' + fmt(fill) + ', border ' + fmt(border) + ') on ' + fmt(around) + ' is ' + best.toFixed(2) + ':1, needs 3');
			}
		}
		return out;
	};

	// phone lists what in the elements sel selects does not fit a screen width px wide, and
	// controls smaller than WCAG 2.2's 24 by 24 px target.
	const phone = (sel, width) => {
		const out = [];
		if (document.documentElement.scrollWidth > width) out.push('the page is ' + document.documentElement.scrollWidth + 'px wide');
		for (const e of under(sel)) {
			if (!visible(e)) continue;
			const r = e.getBoundingClientRect();
			if (r.left < 0 || r.right > width + 0.5) out.push(name(e) + ' spans ' + Math.round(r.left) + ' to ' + Math.round(r.right) + 'px');
			if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible') out.push(name(e) + ' scrolls sideways');
			if (e.matches('button, a[href], input, select') && (r.width < 24 || r.height < 24)) out.push(name(e) + ' is ' + Math.round(r.width) + 'x' + Math.round(r.height) + 'px, under 24x24');
		}
		return out;
	};
	return { parse, over, ratio, background, name, fmt, contrast, phone };
})();`

// setScheme makes the page prefer the dark colour scheme, or the light one.
func (p *page) setScheme(dark bool) {
	p.t.Helper()
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	ctx, cancel := contextWithTimeout(p)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
	if err != nil {
		p.t.Fatalf("%s: emulate prefers-color-scheme %s: %v", p.name, scheme, err)
	}
	if !eval[bool](p, fmt.Sprintf(`matchMedia('(prefers-color-scheme: %s)').matches`, scheme)) {
		p.t.Fatalf("%s: the page does not see the %s scheme", p.name, scheme)
	}
}

// checkContrast fails the test for everything on screen in the elements
// sel selects that is below WCAG AA contrast, in the light and in the
// dark colour scheme; what says which screen it is.
func (p *page) checkContrast(what, sel string) {
	p.t.Helper()
	for _, dark := range []bool{false, true} {
		p.setScheme(dark)
		p.do(evalVoid(wcagJS))
		for _, problem := range eval[[]string](p, fmt.Sprintf(`wcag.contrast(%s)`, js(sel))) {
			p.t.Errorf("%s, %s, dark scheme %v: %s", p.name, what, dark, problem)
		}
	}
	p.setScheme(false)
}

// focusJS describes the focus indicator of the focused element: "" when
// it has a visible one (an outline at least 2px wide, 3:1 against what
// it is drawn on, and not cut off by an ancestor that clips), else what
// is wrong.
const focusJS = `(() => {
	const { parse, over, ratio, background, name, fmt } = wcag;
	const e = document.activeElement;
	if (!e || e === document.body) return '';
	if (!e.matches(':focus-visible')) return name(e) + ': not :focus-visible after Tab';
	const s = getComputedStyle(e), width = parseFloat(s.outlineWidth);
	if (s.outlineStyle === 'none' || width < 2) return name(e) + ': no outline (' + s.outlineStyle + ' ' + s.outlineWidth + ')';
	const offset = parseFloat(s.outlineOffset);
	const around = offset >= 0 ? background(e.parentElement) : background(e);
	const r = ratio(over(parse(s.outlineColor), around), around);
	if (r < 3) return name(e) + ': outline ' + s.outlineColor + ' on ' + fmt(around) + ' is ' + r.toFixed(2) + ':1, needs 3';
	const b = e.getBoundingClientRect(), grow = Math.max(offset + width, 0); // a negative offset draws it inwards
	for (let n = e.parentElement; n; n = n.parentElement) {
		const ns = getComputedStyle(n);
		if (ns.overflowX === 'visible' && ns.overflowY === 'visible') continue;
		const c = n.getBoundingClientRect();
		if (b.left - grow < c.left + n.clientLeft || b.top - grow < c.top + n.clientTop ||
			b.right + grow > c.left + n.clientLeft + n.clientWidth || b.bottom + grow > c.top + n.clientTop + n.clientHeight) {
			return name(e) + ': its outline is cut off by ' + name(n);
		}
	}
	return '';
})()`

// checkFocus tabs through every control of the page, in the light and the
// dark scheme, and fails the test for each whose focus is not visible.
func (p *page) checkFocus(what string) {
	p.t.Helper()
	for _, dark := range []bool{false, true} {
		p.setScheme(dark)
		p.do(evalVoid(wcagJS + `document.activeElement && document.activeElement.blur()`))
		first, seen := "", 0
		for i := 0; i < 200; i++ {
			p.do(chromedp.KeyEvent(kb.Tab))
			id := eval[string](p, `(e => e === document.body ? '' : wcag.name(e) + '@' + [...document.querySelectorAll('*')].indexOf(e))(document.activeElement)`)
			if id == "" {
				continue // past the last control, on the page itself
			}
			if id == first {
				break
			}
			if first == "" {
				first = id
			}
			seen++
			if problem := eval[string](p, focusJS); problem != "" {
				p.t.Errorf("%s, %s, dark scheme %v: %s", p.name, what, dark, problem)
			}
		}
		if seen < 2 {
			p.t.Errorf("%s, %s: Tab reached %d controls", p.name, what, seen)
		}
		p.t.Logf("%s, %s, dark %v: Tab reached %d controls", p.name, what, dark, seen)
	}
	p.setScheme(false)
}
