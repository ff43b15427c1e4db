#ifndef CTR_REAPER_H
#define CTR_REAPER_H
/* docker --init: a minimal PID 1 that reaps orphans and forwards signals. */
int reaper_main(int argc, char **argv);
#endif
