/* A tiny static x86-64 Linux program for bareroot's golden-digest recipes:
 * no libc, no interpreter, two system calls. Prints its message and exits 0.
 * Rebuild with ./build.sh (GNU as + ld); the committed binary is what the
 * golden digests in tests/golden/ are computed from. */
        .globl _start
        .text
_start:
        mov     $1, %eax                /* write(1, msg, len) */
        mov     $1, %edi
        lea     msg(%rip), %rsi
        mov     $len, %edx
        syscall
        mov     $60, %eax               /* exit(0) */
        xor     %edi, %edi
        syscall

        .section .rodata
msg:    .ascii  "hello from a bareroot image\n"
        .set    len, . - msg
