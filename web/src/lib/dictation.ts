// Dictation behind one small interface: `startDictation(onText, onEnd)`. Today the engine is
// the browser's Web Speech API (`SpeechRecognition`, `webkitSpeechRecognition` in Chromium),
// where it exists; a server-side speech-to-text service can plug in with `setDictationEngine`
// without the editor changing.

/** A running dictation. */
export interface DictationSession {
  stop(): void;
}

/**
 * Text as it is recognised: `final` false for the interim guess of the words being spoken
 * (replaced by the next call), true for words that are settled (append them).
 */
export type OnDictationText = (text: string, final: boolean) => void;
/** The dictation ended: `error` says why when it was not stopped on purpose. */
export type OnDictationEnd = (error?: string) => void;

export interface DictationEngine {
  available(): boolean;
  start(onText: OnDictationText, onEnd: OnDictationEnd, lang?: string): DictationSession;
}

// --- the Web Speech API --------------------------------------------------------------------

interface SpeechAlternative {
  transcript: string;
}
interface SpeechResult {
  readonly isFinal: boolean;
  readonly length: number;
  [i: number]: SpeechAlternative;
}
interface SpeechResultEvent {
  readonly resultIndex: number;
  readonly results: { readonly length: number; [i: number]: SpeechResult };
}
interface SpeechRecognizer {
  lang: string;
  continuous: boolean;
  interimResults: boolean;
  onresult: ((e: SpeechResultEvent) => void) | null;
  onerror: ((e: { error: string; message?: string }) => void) | null;
  onend: (() => void) | null;
  start(): void;
  stop(): void;
}
type SpeechRecognizerClass = new () => SpeechRecognizer;

function recognizerClass(): SpeechRecognizerClass | undefined {
  if (typeof window === 'undefined') return undefined;
  const w = window as unknown as { SpeechRecognition?: SpeechRecognizerClass; webkitSpeechRecognition?: SpeechRecognizerClass };
  return w.SpeechRecognition ?? w.webkitSpeechRecognition;
}

const SPEECH_ERRORS: Record<string, string> = {
  'not-allowed': 'the microphone is not allowed',
  'service-not-allowed': 'speech recognition is not allowed',
  'no-speech': 'no speech was heard',
  'audio-capture': 'no microphone was found',
  network: 'the speech service cannot be reached',
};

/** Split one result event into its settled text and the interim guess. */
export function readSpeechEvent(e: SpeechResultEvent): { final: string; interim: string } {
  let final = '';
  let interim = '';
  for (let i = e.resultIndex; i < e.results.length; i += 1) {
    const r = e.results[i];
    const t = r.length > 0 ? r[0].transcript : '';
    if (r.isFinal) final += t;
    else interim += t;
  }
  return { final, interim };
}

export const webSpeechEngine: DictationEngine = {
  available: () => !!recognizerClass(),
  start(onText, onEnd, lang) {
    const Recognizer = recognizerClass();
    if (!Recognizer) {
      onEnd('speech recognition is not available in this browser');
      return { stop() {} };
    }
    const rec = new Recognizer();
    rec.lang = lang ?? (typeof navigator !== 'undefined' ? navigator.language : 'en-US');
    rec.continuous = true;
    rec.interimResults = true;
    let error: string | undefined;
    let stopped = false;
    rec.onresult = (e) => {
      const { final, interim } = readSpeechEvent(e);
      if (final) onText(final, true);
      onText(interim, false);
    };
    rec.onerror = (e) => {
      if (e.error !== 'aborted') error = SPEECH_ERRORS[e.error] ?? e.message ?? e.error;
    };
    rec.onend = () => {
      if (!stopped) onEnd(error);
      stopped = true;
    };
    try {
      rec.start();
    } catch (e) {
      stopped = true;
      onEnd(e instanceof Error ? e.message : String(e));
    }
    return {
      stop() {
        if (stopped) return;
        stopped = true;
        try {
          rec.stop();
        } catch {
          // already ended
        }
        onEnd();
      },
    };
  },
};

let engine: DictationEngine = webSpeechEngine;

/** Use another engine (e.g. a server-side speech-to-text service). */
export function setDictationEngine(e: DictationEngine): void {
  engine = e;
}

/** Whether dictation can be offered here. */
export function dictationAvailable(): boolean {
  return engine.available();
}

/** Start dictating: `onText` gets interim and final text, `onEnd` the end (with a reason on failure). */
export function startDictation(onText: OnDictationText, onEnd: OnDictationEnd, lang?: string): DictationSession {
  return engine.start(onText, onEnd, lang);
}
