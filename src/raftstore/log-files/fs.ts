/** Promise forms of the node:fs calls the Raft log files make on libuv's thread pool (never *Sync on the write path). */
import { close as closeFd, fdatasync, fstat, fsync, ftruncate, open as openFd, rename, unlink, write as writeFd, writev as writevFd } from 'node:fs'

export const fdatasyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())))
export const fsyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve())))
export const closeAsync = (fd: number) => new Promise<void>((resolve, reject) => closeFd(fd, (error) => (error ? reject(error) : resolve())))
export const openAsync = (path: string, flags: string | number) => new Promise<number>((resolve, reject) => openFd(path, flags, (error, fd) => (error ? reject(error) : resolve(fd))))

/** writeAllAsync writes `buffer` at `position` on the thread pool; a short write (a signal, a full disk) continues where it stopped. */
export async function writeAllAsync(fd: number, buffer: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buffer.length; ) {
    done += await new Promise<number>((resolve, reject) => writeFd(fd, buffer, done, buffer.length - done, position + done, (error, n) => (error ? reject(error) : resolve(n))))
  }
}

/** writevAllAsync writes `buffers` back to back at `position` in one writev on the thread pool; a short write continues with writeAllAsync. */
export async function writevAllAsync(fd: number, buffers: Buffer[], position: number): Promise<void> {
  if (buffers.length === 1) return writeAllAsync(fd, buffers[0]!, position)
  let total = 0
  for (const buffer of buffers) total += buffer.length
  const done = await new Promise<number>((resolve, reject) => writevFd(fd, buffers, position, (error, n) => (error ? reject(error) : resolve(n))))
  if (done < total) await writeAllAsync(fd, Buffer.concat(buffers).subarray(done), position + done)
}

/** unlinkAsync removes `path`; a file already gone is fine. */
export const unlinkAsync = (path: string) => new Promise<void>((resolve, reject) => unlink(path, (error) => (error && error.code !== 'ENOENT' ? reject(error) : resolve())))

export const ftruncateAsync = (fd: number, length: number) => new Promise<void>((resolve, reject) => ftruncate(fd, length, (error) => (error ? reject(error) : resolve())))
export const renameAsync = (from: string, to: string) => new Promise<void>((resolve, reject) => rename(from, to, (error) => (error ? reject(error) : resolve())))
export const fileSizeAsync = (fd: number) => new Promise<number>((resolve, reject) => fstat(fd, (error, stats) => (error ? reject(error) : resolve(stats.size))))
