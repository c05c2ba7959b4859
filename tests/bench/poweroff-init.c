/* The benchmark's peer /init: the least a guest can do — reset at once (the kernel runs
 * with reboot=t, and QEMU's -no-reboot turns the reset into its exit). */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    reboot(RB_AUTOBOOT);
    return 1;
}
