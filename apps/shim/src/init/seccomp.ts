/**
 * Compiled seccomp filters, kept for the next container.
 *
 * libseccomp compiles docker's default profile (some 360 rules for three
 * architectures) in about 20 ms, and a container's init did it at every
 * start and exec, as runc's does. A filter depends only on the rules and on
 * the ctr-init (its libseccomp) that compiles it, so the shim has ctr-init
 * compile each profile once (`ctr-init seccomp-bpf`) and keeps the program
 * under <state>/seccomp/, named by a hash of the profile and of that binary;
 * the init then loads it as
 * it is (PLAN_SECCOMP_BPF). A profile not compiled yet is compiled by the
 * init as before, and in the background for the next container, so no start
 * waits for a compile it would not have made anyway.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomicSync } from '@ctr/common/fsutil';
import type { Logger } from '@ctr/common/log';
import type { Seccomp, Spec } from '@ctr/oci';
import { ctrInitPath } from './launch.js';
import { seccompRules } from './plan.js';

/** 8-byte instructions, at most BPF_MAXINSNS. */
const isProgram = (b: Buffer) => b.length > 0 && b.length % 8 === 0 && b.length / 8 <= 4096;

/** Runs `ctr-init seccomp-bpf` on the rules: the compiled program. */
function compile(rules: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(ctrInitPath(), ['seccomp-bpf'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let errText = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (errText += d));
    child.stdin.on('error', () => undefined);
    child.once('error', reject);
    child.once('close', (code) => {
      const program = Buffer.concat(out);
      if (code === 0 && isProgram(program)) resolve(program);
      else reject(new Error(errText.trim() || `ctr-init seccomp-bpf exited ${code}`));
    });
    child.stdin.end(rules);
  });
}

export class SeccompFilters {
  readonly #known = new Map<string, Buffer>();
  readonly #compiling = new Set<string>();
  #init?: string;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** What names a filter: the profile (as JSON: cheaper than its plan records) and the ctr-init that compiles it. */
  #key(profile: Seccomp): string {
    if (this.#init === undefined) {
      const path = ctrInitPath();
      const st = statSync(path);
      this.#init = `${path}:${st.size}:${st.mtimeMs}`;
    }
    return createHash('sha256').update(this.#init).update('\0').update(JSON.stringify(profile)).digest('hex');
  }

  /** The spec's profile compiled, if it was once (else the init compiles it, and so do we, for next time). */
  async get(spec: Spec): Promise<Buffer | undefined> {
    const profile = spec.linux?.seccomp;
    if (!profile) return undefined;
    let key: string;
    try {
      key = this.#key(profile);
    } catch {
      return undefined;
    }
    const known = this.#known.get(key);
    if (known) return known;
    const file = join(this.dir, `${key}.bpf`);
    const kept = await readFile(file).catch(() => undefined);
    if (kept && isProgram(kept)) {
      this.#known.set(key, kept);
      return kept;
    }
    if (!this.#compiling.has(key)) {
      this.#compiling.add(key);
      void compile(seccompRules(spec) as Buffer)
        .then((program) => {
          writeFileAtomicSync(file, program, 0o600);
          this.#known.set(key, program);
        })
        .catch((err) => this.log.warn({ err }, 'cannot compile a seccomp filter ahead; the init compiles it'))
        .finally(() => this.#compiling.delete(key));
    }
    return undefined;
  }
}
