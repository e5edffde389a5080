/* A private library, installed next to its program as ../lib/libgreet.so.1
 * and found through RUNPATH=$ORIGIN/../lib. */
#include <stdio.h>

void greet(const char *who) {
    printf("greetings, %s, from a private library\n", who);
}
