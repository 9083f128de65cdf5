import { describe, expect, it } from 'vitest';
import {
  TemplateError,
  checkForm,
  displayValue,
  emptyAlerts,
  formToValues,
  missingRequired,
  parseTemplate,
  problemsByField,
  templateFromElement,
  valuesToForm,
  type XmlElement,
  type XmlNode,
} from './mrrt';

// vitest runs in node (no DOM): a tiny XML reader that builds nodes of the interface the
// template parser reads (a DOM Element satisfies the same interface in the browser).

class Text implements XmlNode {
  readonly nodeType = 3;
  readonly childNodes: XmlNode[] = [];
  constructor(readonly nodeValue: string) {}
}

class El implements XmlElement {
  readonly nodeType = 1;
  readonly nodeValue = null;
  readonly childNodes: XmlNode[] = [];
  constructor(
    readonly localName: string,
    readonly attrs: Map<string, string>,
  ) {}
  getAttribute(n: string) {
    return this.attrs.get(n) ?? null;
  }
  hasAttribute(n: string) {
    return this.attrs.has(n);
  }
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const decode = (s: string) =>
  s.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (m, e: string) =>
    e[0] === '#' ? String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)) : (ENTITIES[e] ?? m),
  );

function parseXml(xml: string): El {
  const root = new El('#document', new Map());
  const stack: El[] = [root];
  const top = () => stack[stack.length - 1];
  let i = 0;
  while (i < xml.length) {
    if (xml.startsWith('<!--', i)) {
      i = xml.indexOf('-->', i) + 3;
    } else if (xml.startsWith('<![CDATA[', i)) {
      const end = xml.indexOf(']]>', i);
      top().childNodes.push(new Text(xml.slice(i + 9, end)));
      i = end + 3;
    } else if (xml.startsWith('<?', i) || xml.startsWith('<!', i)) {
      i = xml.indexOf('>', i) + 1;
    } else if (xml.startsWith('</', i)) {
      const end = xml.indexOf('>', i);
      const tag = xml.slice(i + 2, end).trim().split(':').pop();
      if (top().localName !== tag) throw new Error(`</${tag}> closes <${top().localName}>`);
      stack.pop();
      i = end + 1;
    } else if (xml[i] === '<') {
      const m = /^<([\w:.-]+)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(xml.slice(i));
      if (!m) throw new Error(`bad tag at ${i}: ${xml.slice(i, i + 30)}`);
      const attrs = new Map<string, string>();
      for (const a of m[2].matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs.set(a[1], decode(a[2] ?? a[3]));
      const el = new El(m[1].split(':').pop()!, attrs);
      top().childNodes.push(el);
      if (!m[3]) stack.push(el);
      i += m[0].length;
    } else {
      const end = xml.indexOf('<', i);
      const stop = end < 0 ? xml.length : end;
      top().childNodes.push(new Text(decode(xml.slice(i, stop))));
      i = stop;
    }
  }
  if (stack.length !== 1) throw new Error(`<${top().localName}> is not closed`);
  const html = root.childNodes.find((n): n is El => n instanceof El);
  if (!html) throw new Error('no root element');
  return html;
}

const parse = (xhtml: string) => templateFromElement(parseXml(xhtml));

const CHEST = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
  <meta charset="UTF-8"/>
  <title>CT Chest</title>
  <script type="text/xml"><![CDATA[<coding><term id="x"/></coding>]]></script>
</head>
<body>
  <section id="clinical" class="level1" data-section-name="Clinical information">
    <header class="level1">Clinical Information</header>
    <p><label for="indication">Indication</label>
       <input type="text" id="indication" name="indication" data-field-type="TEXT" required="required"/></p>
    <p><label for="exam_date">Exam date</label>
       <input type="date" id="exam_date" name="exam_date" data-field-type="DATE"/></p>
  </section>
  <section id="findings" data-section-name="Findings">
    <section id="nodule">
      <header>Dominant nodule</header>
      <p><label for="nodule_size">Size (mm)</label>
         <input type="number" id="nodule_size" name="nodule_size" data-field-type="NUMBER" min="0" max="300" step="0.1" data-field-unit="mm"/> mm</p>
      <p><label>Count <input type="number" id="nodule_count" data-field-type="INTEGER" min="0"/></label></p>
      <p><label for="nodule_type">Type</label>
        <select id="nodule_type" name="nodule_type" data-field-type="CHOICE" required="required">
          <option value="">Choose…</option>
          <option value="solid">Solid</option>
          <option value="part-solid" selected="selected">Part-solid</option>
          <option value="ground-glass">Ground glass &amp; other</option>
        </select></p>
      <p><label for="lobes">Lobes</label>
        <select id="lobes" multiple="multiple"><option value="RUL">Right upper</option><option value="LUL">Left upper</option></select></p>
    </section>
    <p><label for="other">Other findings</label><textarea id="other" name="other">None.</textarea></p>
    <p><label for="views">Views</label><select id="views" data-field-type="SELECTION" data-field-completion-action="ALERT"><option value="pa">PA</option></select></p>
    <p><label for="category">Category</label><select id="category" data-field-type="SELECTION" data-field-completion-action="PROHIBIT"><option value="1">1</option></select></p>
    <p><input type="checkbox" id="effusion" value="present" title="Pleural effusion"/></p>
    <p>Laterality:
      <label><input type="radio" name="side" value="left"/> Left</label>
      <label><input type="radio" name="side" value="right" checked="checked"/> Right</label></p>
    <input type="hidden" id="secret" value="x"/>
  </section>
</body>
</html>`;

describe('MRRT template parsing', () => {
  const t = parse(CHEST);

  it('reads the title and the sections, nested ones too', () => {
    expect(t.title).toBe('CT Chest');
    expect(t.sections.map((s) => [s.name, s.level])).toEqual([
      ['Clinical information', 1],
      ['Findings', 1],
      ['Dominant nodule', 2],
    ]);
    expect(t.sections[0].fields.map((f) => f.id)).toEqual(['indication', 'exam_date']);
    expect(t.sections[2].fields.map((f) => f.id)).toEqual(['nodule_size', 'nodule_count', 'nodule_type', 'lobes']);
    expect(t.sections[1].fields.map((f) => f.id)).toEqual(['other', 'views', 'category', 'effusion', 'side']);
  });

  it('reads each field: kind, label, required, range, choices and defaults', () => {
    const f = Object.fromEntries(t.fields.map((x) => [x.id, x]));
    expect(f.indication).toMatchObject({ kind: 'text', label: 'Indication', required: true, fieldType: 'TEXT' });
    expect(f.exam_date).toMatchObject({ kind: 'date', label: 'Exam date', required: false });
    expect(f.nodule_size).toMatchObject({ kind: 'number', label: 'Size (mm)', min: 0, max: 300, step: 0.1, unit: 'mm' });
    expect(f.views).toMatchObject({ kind: 'choice', required: false, alert: true });
    expect(f.category).toMatchObject({ kind: 'choice', required: true });
    expect(f.category.alert).toBeUndefined();
    expect(f.nodule_size.integer).toBeUndefined();
    expect(f.nodule_count).toMatchObject({ kind: 'number', label: 'Count', integer: true, min: 0 });
    expect(f.nodule_type).toMatchObject({ kind: 'choice', required: true, defaultValue: 'part-solid' });
    expect(f.nodule_type.options).toEqual([
      { value: 'solid', label: 'Solid' },
      { value: 'part-solid', label: 'Part-solid' },
      { value: 'ground-glass', label: 'Ground glass & other' },
    ]);
    expect(f.lobes).toMatchObject({ kind: 'multichoice', label: 'Lobes' });
    expect(f.other).toMatchObject({ kind: 'textarea', defaultValue: 'None.' });
    expect(f.effusion).toMatchObject({ kind: 'boolean', label: 'Pleural effusion', options: [{ value: 'present', label: 'Pleural effusion' }] });
    expect(f.effusion.defaultValue).toBeUndefined();
    expect(f.side).toMatchObject({ kind: 'choice', defaultValue: 'right' });
    expect(f.side.options).toEqual([
      { value: 'left', label: 'Left' },
      { value: 'right', label: 'Right' },
    ]);
    expect(f.secret).toBeUndefined();
  });

  it('refuses a template without fields or with a field id used twice', () => {
    expect(() => parse('<html><body><section data-section-name="A"><p>text</p></section></body></html>')).toThrow(TemplateError);
    expect(() => parse('<html><body><input id="a"/><textarea id="a"></textarea></body></html>')).toThrow(/used twice/);
  });

  it('keeps fields outside any section in an unnamed first section', () => {
    const u = parse('<html><body><p><label for="a">A</label><input id="a"/></p><section data-section-name="S"><input id="b" title="B"/></section></body></html>');
    expect(u.sections.map((s) => [s.name, s.level, s.fields.map((f) => f.label)])).toEqual([
      ['', 0, ['A']],
      ['S', 1, ['B']],
    ]);
  });

  it('uses the browser parser when given one, falling back to HTML for non-XML', () => {
    const seen: string[] = [];
    const xml = parseXml('<html><body><input id="q" title="Q"/></body></html>');
    const fake = {
      parseFromString(_s: string, type: string) {
        seen.push(type);
        const error = type === 'application/xhtml+xml';
        return {
          documentElement: xml,
          getElementsByTagName: (n: string) => (error && n === 'parsererror' ? [{ textContent: 'bad entity' }] : []),
        } as unknown as Document;
      },
    };
    expect(parseTemplate('<html>&nbsp;</html>', fake).fields[0].id).toBe('q');
    expect(seen).toEqual(['application/xhtml+xml', 'text/html']);
  });
});

// The server's starter library (crates/radris-report/templates), when this checkout has it:
// every template the server ships must give the editor a form, with the same required fields.
const starters = import.meta.glob('../../../crates/radris-report/templates/*.html', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

describe("the server's starter templates", () => {
  it.skipIf(Object.keys(starters).length === 0)('parse into sections and fields', () => {
    for (const [path, xhtml] of Object.entries(starters)) {
      const t = parse(xhtml);
      expect(t.title, path).not.toBe('');
      expect(t.fields.length, path).toBeGreaterThan(0);
      expect(new Set(t.fields.map((f) => f.id)).size, path).toBe(t.fields.length);
      for (const f of t.fields) expect(f.label, `${path} ${f.id}`).not.toBe('');
      // what the server requires: `required` or completion action PROHIBIT
      const want = [...xhtml.matchAll(/<(?:input|select|textarea)\b[^>]*>/g)]
        .filter((m) => /\brequired=|data-field-completion-action="PROHIBIT"/.test(m[0]))
        .map((m) => /\bid="([^"]+)"/.exec(m[0])![1]);
      expect(t.fields.filter((f) => f.required).map((f) => f.id), path).toEqual(want);
      // a blank form lists exactly those as missing
      expect(missingRequired(t, valuesToForm(t, {})).map((p) => p.field), path).toEqual(want);
    }
  });
});

describe('form state and content.values', () => {
  const t = parse(CHEST);

  it('fills a new report with the template defaults, a saved one with its values', () => {
    const fresh = valuesToForm(t, {}, true);
    expect(fresh).toMatchObject({ indication: '', nodule_type: 'part-solid', lobes: [], other: 'None.', side: 'right' });
    const saved = valuesToForm(t, { nodule_size: 12.5, lobes: ['RUL'], indication: 'cough' });
    expect(saved).toMatchObject({ nodule_size: '12.5', lobes: ['RUL'], indication: 'cough', nodule_type: '', other: '' });
  });

  it('types the values: numbers, arrays of choices, blanks left out, unknown keys kept', () => {
    const form = { ...valuesToForm(t, {}), indication: 'cough', nodule_size: ' 12,5 ', nodule_count: '3', lobes: ['RUL', 'LUL'], exam_date: '2026-11-28', other: '  ' };
    expect(formToValues(t, form, { legacy: 'x', indication: 'old' })).toEqual({
      legacy: 'x',
      indication: 'cough',
      nodule_size: 12.5,
      nodule_count: 3,
      lobes: ['RUL', 'LUL'],
      exam_date: '2026-11-28',
    });
    // round trip
    const values = formToValues(t, form);
    expect(formToValues(t, valuesToForm(t, values))).toEqual(values);
  });

  it('leaves out values the server would refuse', () => {
    const form = { ...valuesToForm(t, {}), nodule_size: '400', nodule_count: '2.5', nodule_type: 'cavitary' };
    expect(formToValues(t, form)).toEqual({});
  });

  it('lists the missing required fields and the bad values', () => {
    const form = valuesToForm(t, {});
    expect(missingRequired(t, form).map((p) => p.field)).toEqual(['indication', 'nodule_type', 'category']);
    expect(emptyAlerts(t, form).map((f) => f.id)).toEqual(['views']);
    expect(emptyAlerts(t, { ...form, views: 'pa' })).toEqual([]);
    expect(missingRequired(t, form)[0].message).toBe('Indication is required');
    const bad = { ...form, indication: 'x', nodule_type: 'solid', category: '1', nodule_size: 'big', nodule_count: '-1', lobes: ['XYZ'] };
    expect(missingRequired(t, bad)).toEqual([]);
    expect(checkForm(t, bad).map((p) => [p.field, p.kind])).toEqual([
      ['nodule_size', 'not_a_number'],
      ['nodule_count', 'below_min'],
      ['lobes', 'unknown_option'],
    ]);
    expect(checkForm(t, { ...bad, nodule_size: '301', nodule_count: '1.5', lobes: [] }).map((p) => p.kind)).toEqual(['above_max', 'not_an_integer']);
  });

  it("places the server's problems next to the fields they name", () => {
    const { byField, other } = problemsByField(t, [
      'nodule_type: required',
      'Indication is missing',
      'Size (mm) must be at most 300',
      'the report needs an impression',
      'nodule_types is unknown',
    ]);
    expect(byField).toEqual({
      nodule_type: ['nodule_type: required'],
      indication: ['Indication is missing'],
      nodule_size: ['Size (mm) must be at most 300'],
    });
    expect(other).toEqual(['the report needs an impression', 'nodule_types is unknown']);
  });

  it('shows values as a reader sees them', () => {
    const f = Object.fromEntries(t.fields.map((x) => [x.id, x]));
    expect(displayValue(f.nodule_type, 'ground-glass')).toBe('Ground glass & other');
    expect(displayValue(f.lobes, ['RUL', 'LUL'])).toBe('Right upper, Left upper');
    expect(displayValue(f.nodule_size, 12)).toBe('12');
    expect(displayValue(f.indication, undefined)).toBe('');
  });
});
