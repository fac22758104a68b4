/**
 * Test helpers for hypervisor tests: a disk whose first sector, when a PC boots from
 * it, prints a line on the first serial port (COM1), so a test can see that a VM's
 * firmware read and ran the volume's bytes; and a wait for that line.
 */

/**
 * A 512-byte MBR boot sector printing `line` and a newline on COM1, then halting.
 * 16-bit real mode at 0x7C00: cld; xor ax, ax; mov ds, ax; mov si, message;
 * mov dx, 0x3F8; next: lodsb; test al, al; jz done; out dx, al; jmp next;
 * done: cli; hlt; jmp done-ish (hlt again). The UART needs no set-up in QEMU.
 */
export function bootSector(line: string): Uint8Array<ArrayBuffer> {
  const code = [
    0xfc, // cld
    0x31,
    0xc0, // xor ax, ax
    0x8e,
    0xd8, // mov ds, ax
    0xbe,
    0x17,
    0x7c, // mov si, 0x7C17 (the message, right after the code)
    0xba,
    0xf8,
    0x03, // mov dx, 0x3F8 (COM1)
    0xac, // next: lodsb
    0x84,
    0xc0, // test al, al
    0x74,
    0x03, // jz done
    0xee, // out dx, al
    0xeb,
    0xf8, // jmp next
    0xfa, // done: cli
    0xf4, // hlt
    0xeb,
    0xfd, // jmp hlt
  ];
  if (code.length !== 0x17) throw new Error("bootSector: the code must end at 0x17");
  const message = new TextEncoder().encode(`${line}\n\0`);
  if (code.length + message.length > 510) throw new RangeError("bootSector: line too long");
  const sector = new Uint8Array(512);
  sector.set(code);
  sector.set(message, code.length);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * Waits until the file at `path` holds `text` (a serial console written by QEMU),
 * or throws after `timeoutMs` with what it holds. The timeout only bounds a
 * failure; no test asserts on how long booting took.
 */
export async function waitForText(path: string, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let content = "";
  while (Date.now() < deadline) {
    content = await Deno.readTextFile(path).catch(() => "");
    if (content.includes(text)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `${path} never held ${JSON.stringify(text)}; it holds ${JSON.stringify(content)}`,
  );
}
