/* Prints which machine it runs as: the same source, cross-compiled for every
 * platform of recipes/multiarch.toml. Linked against the platform's glibc. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    if (uname(&u) != 0)
        return 1;
    printf("hello from %s (%zu-bit)\n", u.machine, sizeof(void *) * 8);
    return 0;
}
