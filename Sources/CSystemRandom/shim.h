// getrandom(2): Glibc's Swift module does not export <sys/random.h>.
#if defined(__linux__)
#include <sys/random.h>
#endif
