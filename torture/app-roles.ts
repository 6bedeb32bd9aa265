/** The roles of the application process (app.ts), shared by the harness that starts them. */
import type { CheckpointMode } from './schedule.js';

export type AppRole =
  | { role: 'init'; db: string }
  | {
      role: 'writer';
      db: string;
      ledger: string;
      name: string;
      seed: number;
      firstId: number;
      /** Undefined: until stopped (the long-lived writer, controlled on stdin: pause, resume, stop). */
      transactions?: number;
      control: boolean;
      rows: [number, number];
      bodyBytes: [number, number];
      deleteChance: number;
      pauseMs: [number, number];
      synchronousNormal: boolean;
    }
  | { role: 'big'; db: string; ledger: string; firstId: number; parts: number; partBytes: number }
  | { role: 'doomed'; db: string; ledger: string; firstId: number; rows: number }
  | { role: 'reader'; db: string; holdMs: number }
  | { role: 'checkpoint'; db: string; mode: CheckpointMode }
  | { role: 'vacuum'; db: string }
  | { role: 'facts'; db: string; integrity: boolean };
