// IHE MRRT report templates (XHTML) read in the browser: the sections and fields the report
// editor renders as its own form (the template's HTML is never put into the page). The parser
// walks a minimal element interface that a DOM Element satisfies, so it also runs in tests
// without a DOM. Also: form state ↔ `content.values`, and the field checks the server makes
// when signing (missing required fields, numbers out of range, unknown choices), for early
// feedback.
//
// What is read:
//   <title>                                                  the template's title
//   <section data-section-name="…"> (or its <header>)        a section (nested ones too)
//   <input type="text|number|date|time|checkbox|radio" id name data-field-type required min max step value>
//   <select id name multiple required> <option value selected>…</option> </select>
//   <textarea id name required>default</textarea>
//   <label for="id">…</label> or a <label> around the control  the field's label
// `data-field-type` (MRRT: TEXT, NUMBER, INTEGER, DATE, TIME, BOOLEAN, SELECTION…) wins over
// `type`. A field is required with `required` or `data-field-completion-action="PROHIBIT"`
// (`ALERT`: it should be filled, but signing is not refused); `data-field-unit` names the unit
// of a number (RADRIS's extension, as the server reads templates).

import type { FieldValue } from './reports';

/** The part of a DOM node the parser reads. */
export interface XmlNode {
  /** 1 element, 3 text, 4 CDATA */
  readonly nodeType: number;
  readonly nodeValue: string | null;
  readonly childNodes: ArrayLike<XmlNode>;
}

/** The part of a DOM element the parser reads. */
export interface XmlElement extends XmlNode {
  readonly localName: string;
  getAttribute(name: string): string | null;
  hasAttribute(name: string): boolean;
}

export type FieldKind = 'text' | 'number' | 'date' | 'time' | 'choice' | 'multichoice' | 'textarea' | 'boolean';

export interface FieldOption {
  value: string;
  label: string;
}

export interface TemplateField {
  /** the key of its value in `content.values` (the control's id, else its name) */
  id: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  /** number fields: whole numbers only (MRRT INTEGER) */
  integer?: boolean;
  min?: number;
  max?: number;
  step?: number;
  /** choice fields */
  options?: FieldOption[];
  /** what the template fills in (value, checked, selected, the textarea's text) */
  defaultValue?: string | string[];
  placeholder?: string;
  /** the MRRT field type as written, upper case ('' when none) */
  fieldType: string;
  /** `data-field-completion-action="ALERT"`: should be filled before signing (not enforced) */
  alert?: boolean;
  /** a number's unit (`data-field-unit`, UCUM) */
  unit?: string;
}

export interface TemplateSection {
  name: string;
  /** 1 for a top-level section, 2 inside one… (0: fields outside any section) */
  level: number;
  fields: TemplateField[];
}

export interface ParsedTemplate {
  title: string;
  sections: TemplateSection[];
  /** every field, in document order */
  fields: TemplateField[];
}

/** The raw form state: what the inputs hold (strings; the chosen options of a multiple choice). */
export type FormState = Record<string, string | string[]>;

export interface FieldProblem {
  field: string;
  label: string;
  kind: 'missing' | 'not_a_number' | 'not_an_integer' | 'below_min' | 'above_max' | 'unknown_option';
  message: string;
}

export class TemplateError extends Error {}

const ELEMENT = 1;
const TEXT = 3;
const CDATA = 4;

const isElement = (n: XmlNode): n is XmlElement => n.nodeType === ELEMENT;
const name = (e: XmlElement) => e.localName.toLowerCase();
const attr = (e: XmlElement, a: string) => e.getAttribute(a) ?? '';
const squash = (s: string) => s.replace(/\s+/g, ' ').trim();

function* children(e: XmlNode): Generator<XmlNode> {
  for (let i = 0; i < e.childNodes.length; i += 1) yield e.childNodes[i];
}

/** Text of a subtree, skipping scripts, styles and the given element names. */
function textOf(n: XmlNode, skip: ReadonlySet<string> = new Set()): string {
  if (n.nodeType === TEXT || n.nodeType === CDATA) return n.nodeValue ?? '';
  if (!isElement(n)) return '';
  const tag = name(n);
  if (tag === 'script' || tag === 'style' || skip.has(tag)) return '';
  let out = '';
  for (const c of children(n)) out += textOf(c, skip);
  return out;
}

const CONTROLS = new Set(['input', 'select', 'textarea', 'option', 'button']);

function number(e: XmlElement, a: string): number | undefined {
  const s = attr(e, a).trim();
  if (!s) return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
}

const completion = (e: XmlElement) => attr(e, 'data-field-completion-action').trim().toUpperCase();

function isRequired(e: XmlElement): boolean {
  if (completion(e) === 'PROHIBIT') return true;
  if (e.hasAttribute('required')) return attr(e, 'required').toLowerCase() !== 'false';
  return attr(e, 'aria-required').toLowerCase() === 'true';
}

function options(select: XmlElement): { options: FieldOption[]; selected: string[] } {
  const out: FieldOption[] = [];
  const selected: string[] = [];
  const walk = (n: XmlElement) => {
    for (const c of children(n)) {
      if (!isElement(c)) continue;
      if (name(c) === 'option') {
        const label = squash(textOf(c));
        const value = c.hasAttribute('value') ? attr(c, 'value') : label;
        if (value === '' && !label) continue;
        // an empty value is the "choose…" placeholder, not a choice
        if (value !== '') out.push({ value, label: label || value });
        if (c.hasAttribute('selected') && value !== '') selected.push(value);
      } else if (name(c) === 'optgroup') {
        walk(c);
      }
    }
  };
  walk(select);
  return { options: out, selected };
}

function kindOf(e: XmlElement, fieldType: string): FieldKind | undefined {
  const tag = name(e);
  if (tag === 'textarea') return 'textarea';
  if (tag === 'select') return e.hasAttribute('multiple') ? 'multichoice' : 'choice';
  const type = attr(e, 'type').toLowerCase() || 'text';
  if (['hidden', 'submit', 'button', 'reset', 'image', 'file', 'password'].includes(type)) return undefined;
  switch (fieldType) {
    case 'NUMBER':
    case 'INTEGER':
    case 'DECIMAL':
      return 'number';
    case 'DATE':
      return 'date';
    case 'TIME':
      return 'time';
    case 'BOOLEAN':
      return 'boolean';
    default:
      break;
  }
  switch (type) {
    case 'number':
    case 'range':
      return 'number';
    case 'date':
      return 'date';
    case 'time':
      return 'time';
    case 'checkbox':
      return 'boolean';
    case 'radio':
      return 'choice';
    default:
      return 'text';
  }
}

/**
 * Sections and fields of a template document (its root element, `<html>`). Throws a
 * TemplateError when it holds no field at all or repeats a field id.
 */
export function templateFromElement(root: XmlElement): ParsedTemplate {
  // labels by the control they name
  const labelFor = new Map<string, string>();
  let title = '';
  const collect = (n: XmlNode) => {
    if (!isElement(n)) return;
    const tag = name(n);
    if (tag === 'title' && !title) title = squash(textOf(n));
    if (tag === 'label' && n.hasAttribute('for')) {
      const t = squash(textOf(n, CONTROLS));
      if (t && !labelFor.has(attr(n, 'for'))) labelFor.set(attr(n, 'for'), t);
    }
    for (const c of children(n)) collect(c);
  };
  collect(root);

  const sections: TemplateSection[] = [];
  const fields: TemplateField[] = [];
  const byId = new Map<string, TemplateField>();
  const loose: TemplateSection = { name: '', level: 0, fields: [] };

  const add = (section: TemplateSection, f: TemplateField) => {
    if (byId.has(f.id)) throw new TemplateError(`the field id "${f.id}" is used twice`);
    byId.set(f.id, f);
    fields.push(f);
    section.fields.push(f);
  };

  const walk = (n: XmlNode, section: TemplateSection, level: number, label: string) => {
    if (!isElement(n)) return;
    const tag = name(n);
    if (tag === 'script' || tag === 'style' || tag === 'head' || tag === 'template') return;
    if (tag === 'section') {
      let sname = attr(n, 'data-section-name').trim();
      if (!sname) {
        for (const c of children(n)) {
          if (isElement(c) && ['header', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6'].includes(name(c))) {
            sname = squash(textOf(c));
            break;
          }
        }
      }
      const s: TemplateSection = { name: sname || attr(n, 'title') || attr(n, 'id') || 'Section', level: level + 1, fields: [] };
      sections.push(s);
      for (const c of children(n)) walk(c, s, level + 1, label);
      return;
    }
    if (tag === 'label') {
      const t = squash(textOf(n, CONTROLS));
      for (const c of children(n)) walk(c, section, level, t || label);
      return;
    }
    if (tag === 'input' || tag === 'select' || tag === 'textarea') {
      field(n, section, label);
      return;
    }
    for (const c of children(n)) walk(c, section, level, label);
  };

  const field = (e: XmlElement, section: TemplateSection, enclosingLabel: string) => {
    const fieldType = attr(e, 'data-field-type').trim().toUpperCase();
    const kind = kindOf(e, fieldType);
    if (!kind) return;
    const type = attr(e, 'type').toLowerCase();
    const id = (attr(e, 'id') || attr(e, 'name')).trim();
    // radio buttons of one name are one choice field
    if (name(e) === 'input' && type === 'radio') {
      const group = attr(e, 'name').trim() || id;
      if (!group) return;
      const value = attr(e, 'value');
      const optLabel = labelFor.get(attr(e, 'id')) || enclosingLabel || value;
      let f = byId.get(group);
      if (!f) {
        f = { id: group, label: attr(e, 'title') || attr(e, 'data-field-name') || group, kind: 'choice', required: false, options: [], fieldType };
        add(section, f);
      }
      if (f.kind !== 'choice' || !f.options) throw new TemplateError(`the field id "${group}" is used twice`);
      f.options.push({ value, label: optLabel });
      f.required ||= isRequired(e);
      if (e.hasAttribute('checked')) f.defaultValue = value;
      return;
    }
    if (!id) return;
    const label =
      labelFor.get(attr(e, 'id')) ||
      enclosingLabel ||
      attr(e, 'aria-label') ||
      attr(e, 'title') ||
      attr(e, 'data-field-name') ||
      attr(e, 'name') ||
      id;
    const f: TemplateField = { id, label: squash(label), kind, required: isRequired(e), fieldType };
    if (attr(e, 'placeholder')) f.placeholder = attr(e, 'placeholder');
    if (completion(e) === 'ALERT') f.alert = true;
    if (kind === 'number' && attr(e, 'data-field-unit').trim()) f.unit = attr(e, 'data-field-unit').trim();
    if (kind === 'number') {
      f.min = number(e, 'min');
      f.max = number(e, 'max');
      f.step = number(e, 'step');
      if (fieldType === 'INTEGER') f.integer = true;
      if (f.min === undefined) delete f.min;
      if (f.max === undefined) delete f.max;
      if (f.step === undefined) delete f.step;
    }
    if (kind === 'choice' || kind === 'multichoice') {
      const o = options(e);
      f.options = o.options;
      if (o.selected.length) f.defaultValue = kind === 'multichoice' ? o.selected : o.selected[0];
    } else if (kind === 'textarea') {
      const t = textOf(e).trim();
      if (t) f.defaultValue = t;
    } else if (kind === 'boolean') {
      // the value a ticked box stands for
      f.options = [{ value: attr(e, 'value') || 'true', label: f.label }];
      if (e.hasAttribute('checked')) f.defaultValue = f.options[0].value;
    } else if (attr(e, 'value')) {
      f.defaultValue = attr(e, 'value');
    }
    add(section, f);
  };

  walk(root, loose, 0, '');
  if (fields.length === 0) throw new TemplateError('the template has no fields');
  const all = loose.fields.length ? [loose, ...sections] : sections;
  return { title, sections: all.filter((s) => s.fields.length > 0 || s.level > 0), fields };
}

/** The parse error a DOM parser reports inside the document, if any. */
function parserError(doc: Document): string | undefined {
  const e = doc.getElementsByTagName('parsererror')[0];
  return e ? squash(e.textContent ?? 'not well-formed') : undefined;
}

/**
 * Parse a template's XHTML with the browser's DOMParser (`application/xhtml+xml`; a template
 * that is not well-formed XML, e.g. with HTML entities, is read as HTML instead).
 */
export function parseTemplate(xhtml: string, parser: Pick<DOMParser, 'parseFromString'> = new DOMParser()): ParsedTemplate {
  let doc = parser.parseFromString(xhtml, 'application/xhtml+xml');
  if (parserError(doc)) doc = parser.parseFromString(xhtml, 'text/html');
  if (!doc.documentElement) throw new TemplateError('the template is empty');
  return templateFromElement(doc.documentElement);
}

// --- form state ↔ content.values -------------------------------------------------------------

const isBlank = (v: string | string[] | undefined) => v === undefined || (Array.isArray(v) ? v.length === 0 : v.trim() === '');

/** Form state from saved values (and the template's defaults where `withDefaults` and nothing is saved). */
export function valuesToForm(t: ParsedTemplate, values: Record<string, FieldValue>, withDefaults = false): FormState {
  const out: FormState = {};
  for (const f of t.fields) {
    const v = values[f.id];
    if (v === undefined || v === null) {
      if (withDefaults && f.defaultValue !== undefined) out[f.id] = Array.isArray(f.defaultValue) ? [...f.defaultValue] : f.defaultValue;
      else out[f.id] = f.kind === 'multichoice' ? [] : '';
    } else if (f.kind === 'multichoice') {
      out[f.id] = (Array.isArray(v) ? v : [v]).map(String);
    } else {
      out[f.id] = Array.isArray(v) ? v.map(String).join(', ') : String(v);
    }
  }
  return out;
}

/** One field's typed value, or undefined when blank or not valid for its kind. */
function typed(f: TemplateField, raw: string | string[] | undefined): FieldValue | undefined {
  if (isBlank(raw) || problemOf(f, raw)) return undefined;
  if (f.kind === 'multichoice') return (Array.isArray(raw) ? raw : [raw as string]).filter((s) => s !== '');
  const s = (Array.isArray(raw) ? raw.join(', ') : (raw as string)).trim();
  if (f.kind === 'number') {
    const n = Number(s.replace(',', '.'));
    return Number.isFinite(n) ? n : undefined;
  }
  if (f.kind === 'textarea' || f.kind === 'text') return Array.isArray(raw) ? s : (raw as string);
  return s;
}

/**
 * `content.values` from the form: numbers as numbers, multiple choices as arrays, blank
 * fields left out. Values that fail the field's checks are left out too (the server would
 * refuse the whole save); `keep` carries values of keys the template does not know.
 */
export function formToValues(t: ParsedTemplate, form: FormState, keep: Record<string, FieldValue> = {}): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  const known = new Set(t.fields.map((f) => f.id));
  for (const [k, v] of Object.entries(keep)) if (!known.has(k)) out[k] = v;
  for (const f of t.fields) {
    const v = typed(f, form[f.id]);
    if (v !== undefined) out[f.id] = v;
  }
  return out;
}

function problemOf(f: TemplateField, raw: string | string[] | undefined): FieldProblem | undefined {
  const p = (kind: FieldProblem['kind'], message: string): FieldProblem => ({ field: f.id, label: f.label, kind, message });
  if (isBlank(raw)) return f.required ? p('missing', `${f.label} is required`) : undefined;
  if (f.kind === 'number') {
    const s = (Array.isArray(raw) ? raw.join('') : (raw as string)).trim().replace(',', '.');
    const n = Number(s);
    if (!Number.isFinite(n)) return p('not_a_number', `${f.label} must be a number`);
    if (f.integer && !Number.isInteger(n)) return p('not_an_integer', `${f.label} must be a whole number`);
    if (f.min !== undefined && n < f.min) return p('below_min', `${f.label} must be at least ${f.min}`);
    if (f.max !== undefined && n > f.max) return p('above_max', `${f.label} must be at most ${f.max}`);
  }
  if ((f.kind === 'choice' || f.kind === 'multichoice' || f.kind === 'boolean') && f.options && f.options.length) {
    const allowed = new Set(f.options.map((o) => o.value));
    const chosen = Array.isArray(raw) ? raw : [raw as string];
    const bad = chosen.find((c) => !allowed.has(c));
    if (bad !== undefined) return p('unknown_option', `${f.label}: "${bad}" is not one of the choices`);
  }
  return undefined;
}

/** Every field problem of the form: missing required fields, bad numbers, unknown choices. */
export function checkForm(t: ParsedTemplate, form: FormState): FieldProblem[] {
  return t.fields.map((f) => problemOf(f, form[f.id])).filter((x): x is FieldProblem => !!x);
}

/** The fields the template asks to fill (`ALERT`) that are still empty: a warning only. */
export function emptyAlerts(t: ParsedTemplate, form: FormState): TemplateField[] {
  return t.fields.filter((f) => f.alert && !f.required && isBlank(form[f.id]));
}

/** The required fields still empty (what the server refuses a signature for). */
export function missingRequired(t: ParsedTemplate, form: FormState): FieldProblem[] {
  return checkForm(t, form).filter((p) => p.kind === 'missing');
}

/**
 * The server's problem texts (a 422 on signing) placed next to the fields they name: a text
 * goes to the field whose id or label it mentions (the longest match), else to `other`.
 */
export function problemsByField(t: ParsedTemplate, problems: string[]): { byField: Record<string, string[]>; other: string[] } {
  const byField: Record<string, string[]> = {};
  const other: string[] = [];
  for (const text of problems) {
    const low = text.toLowerCase();
    let best: TemplateField | undefined;
    let bestLen = 0;
    for (const f of t.fields) {
      for (const key of [f.id, f.label]) {
        const k = key.toLowerCase();
        if (k && k.length > bestLen && mentions(low, k)) {
          best = f;
          bestLen = k.length;
        }
      }
    }
    if (best) (byField[best.id] ??= []).push(text);
    else other.push(text);
  }
  return { byField, other };
}

/** Whether `text` names `key` as a word of its own (not inside another identifier). */
function mentions(text: string, key: string): boolean {
  let i = text.indexOf(key);
  while (i >= 0) {
    const before = i === 0 ? '' : text[i - 1];
    const after = text[i + key.length] ?? '';
    const word = /[\p{L}\p{N}_-]/u;
    if (!word.test(before) && !word.test(after)) return true;
    i = text.indexOf(key, i + 1);
  }
  return false;
}

/** A field's value as a reader sees it (choices by their labels). */
export function displayValue(f: TemplateField, v: FieldValue | undefined): string {
  if (v === undefined || v === null) return '';
  const label = (x: string) => f.options?.find((o) => o.value === x)?.label ?? x;
  if (Array.isArray(v)) return v.map(label).join(', ');
  if (f.kind === 'choice') return label(String(v));
  if (f.kind === 'boolean') return v ? 'Yes' : '';
  return String(v);
}
