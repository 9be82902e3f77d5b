// Diagnostic LD_PRELOAD for bench/probes/rss.mjs --malloc (not part of the gateway): a thread that
// polls for /tmp/malloc-ctl-<pid>.cmd every 100 ms and runs what it says: "info <file>" writes
// malloc_info(3) XML (per arena: mapped and free bytes) to <file>; "trim" runs malloc_trim(0).
// Build: gcc -O2 -shared -fPIC -o /tmp/malloc-ctl.so bench/probes/malloc-ctl.c -lpthread
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void *poll_loop(void *arg) {
  (void)arg;
  char cmdfile[128], done[140], line[512];
  snprintf(cmdfile, sizeof cmdfile, "/tmp/malloc-ctl-%d.cmd", getpid());
  snprintf(done, sizeof done, "%s.done", cmdfile);
  for (;;) {
    usleep(100000);
    FILE *f = fopen(cmdfile, "r");
    if (!f) continue;
    line[0] = 0;
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    unlink(cmdfile);
    line[strcspn(line, "\n")] = 0;
    if (strncmp(line, "info ", 5) == 0) {
      FILE *o = fopen(line + 5, "w");
      if (o) { malloc_info(0, o); fclose(o); }
    } else if (strcmp(line, "trim") == 0) {
      malloc_trim(0);
    }
    FILE *d = fopen(done, "w");
    if (d) fclose(d);
  }
  return NULL;
}

__attribute__((constructor)) static void start(void) {
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_create(&t, &a, poll_loop, NULL);
}
