// Window/level presets (width, level in HU) as radiologists know them, and their conversion to
// the VOI range Cornerstone takes.

export interface WindowPreset {
  id: string;
  label: string;
  width: number;
  center: number;
  /** keyboard shortcut */
  key: string;
}

export const CT_PRESETS: WindowPreset[] = [
  { id: 'lung', label: 'Lung', width: 1500, center: -600, key: '1' },
  { id: 'mediastinum', label: 'Mediastinum', width: 350, center: 50, key: '2' },
  { id: 'bone', label: 'Bone', width: 2000, center: 300, key: '3' },
  { id: 'brain', label: 'Brain', width: 80, center: 40, key: '4' },
  { id: 'abdomen', label: 'Abdomen', width: 400, center: 40, key: '5' },
];

export interface VoiRange {
  lower: number;
  upper: number;
}

/** PS3.3 C.11.2.1.2 linear function, as a [lower, upper] range. */
export function toVoiRange(width: number, center: number): VoiRange {
  const w = Math.max(1, width);
  return { lower: center - 0.5 - (w - 1) / 2, upper: center - 0.5 + (w - 1) / 2 };
}

export function fromVoiRange(r: VoiRange): { width: number; center: number } {
  const width = r.upper - r.lower + 1;
  return { width, center: r.lower + (width - 1) / 2 + 0.5 };
}

/** The presets that make sense for a modality (CT only: other modalities have no HU scale). */
export function presetsFor(modality: string): WindowPreset[] {
  return modality === 'CT' ? CT_PRESETS : [];
}
