/**
 * Failed own messages, together: one row above the composer ("3 messages not delivered …") with
 * "Resend all" and "Dismiss", instead of a loud box per message.
 */
import { plural } from '../core/format';
import type { MessageEntry } from '../core/session';

export interface FailuresOptions {
  readonly root: HTMLElement;
  readonly text: HTMLElement;
  readonly resend: HTMLButtonElement;
  readonly dismiss: HTMLButtonElement;
  readonly onResend: () => void;
  readonly onDismiss: () => void;
}

export class FailuresBar {
  constructor(private readonly options: FailuresOptions) {
    options.resend.addEventListener('click', () => options.onResend());
    options.dismiss.addEventListener('click', () => options.onDismiss());
  }

  /** Shows `failed` (oldest first); `canResend` is false while offline. */
  render(failed: readonly MessageEntry[], canResend: boolean): void {
    const { root, text, resend } = this.options;
    root.hidden = failed.length === 0;
    const last = failed[failed.length - 1];
    if (!last) return;
    const words = `${plural(failed.length, 'message')} not delivered${last.failure ? `: ${last.failure}` : '.'}`;
    if (text.textContent !== words) text.textContent = words;
    resend.disabled = !canResend;
    resend.title = canResend ? 'Send them again, in order' : 'Connect to resend';
  }
}
