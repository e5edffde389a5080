/* Links libm and libpthread: a thread computes a square root. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>

static double result;

static void *work(void *arg) {
    result = sqrt(*(double *)arg);
    return NULL;
}

int main(void) {
    double x = 1764.0;
    pthread_t t;
    if (pthread_create(&t, NULL, work, &x) != 0)
        return 1;
    pthread_join(t, NULL);
    printf("sqrt(%.0f) = %.0f, computed in a thread\n", x, result);
    return 0;
}
