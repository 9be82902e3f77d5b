// Preload for bench/probes/alloc-profile.mjs: V8's sampling heap profiler over every allocation,
// including objects a scavenge or a full GC already collected (the per-request garbage). SIGUSR2
// starts it; the second SIGUSR2 writes the profile to ALLOC_PROFILE_OUT.
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const session = new inspector.Session();
session.connect();
let on = false;
process.on('SIGUSR2', () => {
  if (!on) {
    on = true;
    session.post('HeapProfiler.startSampling', {
      samplingInterval: Number(process.env.ALLOC_SAMPLING_INTERVAL ?? 2048),
      includeObjectsCollectedByMinorGC: true,
      includeObjectsCollectedByMajorGC: true,
    });
    return;
  }
  session.post('HeapProfiler.stopSampling', (err, res) => {
    writeFileSync(process.env.ALLOC_PROFILE_OUT, JSON.stringify(err ? { error: String(err) } : res.profile));
  });
});
