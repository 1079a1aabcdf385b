/**
 * A tiny PNG encoder for test images (an RGB gradient with a few shapes), so the browser test
 * uploads a real image without any image file checked in.
 */
import { deflateSync } from 'node:zlib'

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(bytes: Buffer): number {
  let c = 0xffffffff
  for (const byte of bytes) c = crcTable[(c ^ byte) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
  return Buffer.concat([head, data, crc])
}

/** gradientPng draws a `width` x `height` picture: a diagonal gradient in `hue` with a sun and hills. */
export function gradientPng(width: number, height: number, hue: [number, number, number]): Buffer {
  const rows: Buffer[] = []
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3)
    for (let x = 0; x < width; x++) {
      const t = (x + y) / (width + height)
      let [r, g, b] = hue.map((c) => Math.round(c * (1 - t) + 255 * t * 0.35))
      const dx = x - width * 0.72
      const dy = y - height * 0.3
      if (dx * dx + dy * dy < (height * 0.13) ** 2) [r, g, b] = [255, 214, 90]
      if (y > height * 0.7 + Math.sin(x / (width / 9)) * height * 0.06) [r, g, b] = [30, 90 + ((x * 7) % 40), 60]
      row.set([r!, g!, b!], 1 + x * 3)
    }
    rows.push(row)
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header.set([8, 2, 0, 0, 0], 8) // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}
