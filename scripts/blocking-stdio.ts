// Preloaded (`--require`) by `npm test` into the test runner and each test file's process.
// `--test-force-exit` ends a process with process.exit() once its tests are done, and on Linux a
// write to a pipe is asynchronous: whatever was still queued was dropped, so a file's last test
// results never reached the runner (nodejs/node#64833), nor the runner's last lines a piped
// `npm test`. With blocking writes, all of it is written before the process can exit; a slow
// reader only makes the writer wait.
for (const stream of [process.stdout, process.stderr]) {
  (stream as unknown as { _handle?: { setBlocking?(on: boolean): void } })._handle?.setBlocking?.(true);
}
