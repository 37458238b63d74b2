// GNU extensions of posix_spawn (glibc 2.29 and 2.34) and pipe2, which Glibc's Swift module does
// not export.
#if defined(__linux__)
#include <spawn.h>
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
extern int pipe2(int descriptors[2], int flags);
#endif
