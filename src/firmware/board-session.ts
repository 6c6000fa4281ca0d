/**
 * What the agent says to the board during an update, one request at a time
 * (SPEC.md section 11.3), with each answer turned into data, a
 * FirmwareError (a refusal that ends the update) or a TransferInterrupted
 * (a transient problem: ask the board again). No job state here: that is
 * board-updater.ts.
 */
import { BodyWriter, RequestOp, ResponseStatus } from '../protocol/fwp/codec.js';
import { RequestError, type FwpDriver, type RequestOptions } from '../protocol/fwp/driver.js';
import { BeginFlag, BeginRefusal, readFwInfo, readFwResume, writeFwBegin, type FwInfo, type FwResume } from '../protocol/fwp/fwu.js';
import { TransferInterrupted } from './chunk-sender.js';
import { FirmwareError, type FirmwareImage } from './image.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export class BoardSession {
  constructor(
    private readonly driver: FwpDriver,
    private readonly request: RequestOptions,
    private readonly stopped: () => boolean,
  ) {}

  private req(op: number, arg?: number | Uint8Array, timeoutMs = this.request.timeoutMs): Promise<Buffer> {
    return this.driver.request(op, arg, { timeoutMs, retries: this.request.retries });
  }

  /** FW_INFO; a 1.0 board (UNKNOWN_OP) cannot be updated over the link. */
  async info(): Promise<FwInfo> {
    let data: Buffer;
    try {
      data = await this.req(RequestOp.FW_INFO);
    } catch (err) {
      if (err instanceof RequestError && err.status === ResponseStatus.UNKNOWN_OP)
        throw new FirmwareError('board_unsupported', "the board's firmware does not take updates over the link (fwp 1.0)");
      throw err;
    }
    const info = readFwInfo(data);
    if (!info) throw new TransferInterrupted('FW_INFO answer too short');
    return info;
  }

  /** Into the bootloader (unless there already): ENTER_BOOTLOADER, then its HELLO. */
  async enterBootloader(info: FwInfo): Promise<void> {
    if (info.bootMode === 1) return;
    const before = this.driver.helloCount;
    await this.req(RequestOp.ENTER_BOOTLOADER);
    await this.waitForHello(10_000, before);
    if (this.driver.hello?.bootMode !== 'bootloader') throw new TransferInterrupted('the board did not come back in its bootloader');
  }

  /** Wait for the board's next HELLO (a reboot) after the `before`-th, up to timeoutMs. */
  async waitForHello(timeoutMs: number, before = this.driver.helloCount): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.driver.helloCount === before && Date.now() < until && !this.stopped()) await sleep(50);
  }

  /** FW_BEGIN: where to send from (a resume when the board has part of this image). */
  async begin(img: FirmwareImage): Promise<FwResume> {
    const args = writeFwBegin(new BodyWriter(), {
      size: img.image.length,
      sha256: img.sha256,
      version: img.version,
      boardModel: img.header.boardModel,
      flags: img.header.allowDowngrade ? BeginFlag.ALLOW_DOWNGRADE : 0,
    });
    try {
      const r = readFwResume(await this.req(RequestOp.FW_BEGIN, args.bytes.subarray(0, args.len)));
      if (!r) throw new TransferInterrupted('FW_BEGIN answer too short');
      return r;
    } catch (err) {
      if (err instanceof RequestError && err.status === ResponseStatus.BAD_ARGUMENT) {
        const reason = err.data?.[0];
        if (reason === BeginRefusal.MODEL) throw new FirmwareError('wrong_model', 'the board refused the image: another board model');
        if (reason === BeginRefusal.DOWNGRADE) throw new FirmwareError('downgrade', 'the board refused the image: older than what it runs');
        if (reason === BeginRefusal.SIZE)
          throw new FirmwareError('too_large', `the board refused the image: ${img.image.length} bytes do not fit its slot`);
        throw new FirmwareError('board_refused', `the board refused FW_BEGIN (${err.message})`);
      }
      throw err;
    }
  }

  /** FW_VERIFY: true when the image matched; false when it did not (the board starts the transfer again). */
  async verify(size: number): Promise<boolean> {
    try {
      // The board hashes the whole image first: allow it time (1 MB/s is slow for a board).
      await this.req(RequestOp.FW_VERIFY, undefined, this.request.timeoutMs + Math.ceil(size / 1000));
      return true;
    } catch (err) {
      if (err instanceof RequestError && err.status === ResponseStatus.BUSY)
        throw new TransferInterrupted('the board has not all of the image yet');
      if (err instanceof RequestError && err.status === ResponseStatus.FAILED) return false;
      throw err;
    }
  }

  /** FW_TEST_BOOT with the confirm deadline; the board resets into the new image about 100 ms later. */
  async testBoot(deadlineS: number): Promise<void> {
    await this.req(RequestOp.FW_TEST_BOOT, deadlineS);
  }

  /** FW_CONFIRM, once the new image said HELLO and its samples flow (a board that reboots again is not confirmed). */
  async confirm(): Promise<void> {
    const samples = this.driver.counters.samples;
    const until = Date.now() + 3000;
    while (this.driver.counters.samples - samples < 5 && Date.now() < until) await sleep(50);
    if (this.driver.counters.samples - samples < 5) throw new TransferInterrupted('the new image sends no samples yet');
    await this.req(RequestOp.FW_CONFIRM);
  }
}
