// The Verilated board top (boards/top.py BoardCore) with its UART pins bit-banged onto a
// pseudo-terminal, so host code that opens a serial port talks to the RTL.
//
//   board_pty FD DIVISOR [IDLE_CYCLES]
//
// FD is the pty master (inherited from the parent). Bytes read from it are sent into the `rx`
// pin as 8N1 frames at DIVISOR clocks per bit; frames seen on the `tx` pin are decoded
// (sampled mid-bit, as a real UART bridge would) and written back to FD. When nothing has
// moved on either pin for IDLE_CYCLES, the simulation blocks on the pty instead of spinning:
// simulated time simply stops until the host sends again, which no design behaviour can see.
// The process ends when its parent goes away.

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <poll.h>
#include <unistd.h>
#include <vector>

#include "Vtritium_board.h"
#include "verilated.h"

namespace {

constexpr uint64_t kBurst = 20000;

struct Sim {
    Vtritium_board top;
    uint64_t cycles = 0;

    void tick() {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
        ++cycles;
    }
};

// Sends queued bytes into the rx pin.
struct Sender {
    int divisor;
    std::deque<uint8_t> queue;
    int bit = -1;       // -1 idle, 0 start, 1..8 data, 9 stop
    int timer = 0;
    uint8_t byte = 0;

    bool busy() const { return bit >= 0 || !queue.empty(); }

    // Level of the rx pin for this cycle.
    int step() {
        if (bit < 0) {
            if (queue.empty()) return 1;
            byte = queue.front();
            queue.pop_front();
            bit = 0;
            timer = divisor;
        }
        int level = bit == 0 ? 0 : bit == 9 ? 1 : (byte >> (bit - 1)) & 1;
        if (--timer == 0) {
            timer = divisor;
            if (++bit == 10) bit = -1;
        }
        return level;
    }
};

// Decodes frames from the tx pin.
struct Receiver {
    int divisor;
    int bit = -1;       // -1 idle, 0 start, 1..8 data, 9 stop
    int timer = 0;
    uint8_t byte = 0;
    uint64_t framing_errors = 0;

    bool busy() const { return bit >= 0; }

    // Feeds one cycle's tx level; returns a byte (0..255) when one completes, else -1.
    int step(int level) {
        if (bit < 0) {
            if (level == 0) {
                bit = 0;
                timer = divisor / 2;
            }
            return -1;
        }
        if (--timer > 0) return -1;
        timer = divisor;
        if (bit == 0) {
            if (level != 0) bit = -1;   // a glitch
            else bit = 1;
            return -1;
        }
        if (bit <= 8) {
            byte = static_cast<uint8_t>(byte >> 1 | (level ? 0x80 : 0));
            ++bit;
            return -1;
        }
        bit = -1;
        if (!level) {
            ++framing_errors;
            return -1;
        }
        return byte;
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s FD DIVISOR [IDLE_CYCLES]\n", argv[0]);
        return 2;
    }
    const int fd = std::atoi(argv[1]);
    const int divisor = std::atoi(argv[2]);
    const uint64_t idle_cycles = std::max<uint64_t>(
        argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 200000, kBurst);
    if (divisor < 4) {
        std::fprintf(stderr, "divisor must be >= 4\n");
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    const pid_t parent = getppid();

    Verilated::commandArgs(argc, argv);
    auto sim = std::make_unique<Sim>();
    sim->top.rx = 1;
    sim->top.rst = 1;
    for (int i = 0; i < 4; ++i) sim->tick();
    sim->top.rst = 0;

    Sender tx_to_dut{divisor};
    Receiver rx_from_dut{divisor};
    std::vector<uint8_t> out;
    uint64_t last_activity = 0;
    uint8_t buf[4096];

    for (;;) {
        const bool quiet = !tx_to_dut.busy() && !rx_from_dut.busy() && out.empty() &&
                           sim->top.tx == 1 && sim->cycles - last_activity > idle_cycles;
        // Look at the pty (a system call, dearer than many simulated cycles) once per bit
        // time while there is nothing queued for the rx pin, every 1024 cycles while there
        // is, at once when a byte for the host is ready, and block while quiet.
        const uint64_t every = tx_to_dut.queue.empty() ? divisor : 1024;
        if (quiet || !out.empty() || sim->cycles % every == 0) {
            if (getppid() != parent) return 0;
            if (tx_to_dut.queue.size() < sizeof buf) {
                struct pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, quiet ? 50 : 0) > 0 && (p.revents & POLLIN)) {
                    ssize_t n = read(fd, buf, sizeof buf);
                    for (ssize_t i = 0; i < n; ++i) tx_to_dut.queue.push_back(buf[i]);
                    if (n > 0) last_activity = sim->cycles;
                } else if (quiet) {
                    if (p.revents & (POLLHUP | POLLERR))
                        usleep(20000);   // no one has the slave open; wait for the host
                    // The design may still be working on a long request without touching a
                    // pin: run a burst before blocking again, so it always makes progress.
                    last_activity = sim->cycles - idle_cycles + kBurst;
                }
            }
            if (!out.empty()) {
                ssize_t n = write(fd, out.data(), out.size());
                if (n > 0) out.erase(out.begin(), out.begin() + n);
            }
        }
        sim->top.rx = tx_to_dut.step();
        sim->tick();
        int b = rx_from_dut.step(sim->top.tx);
        if (b >= 0) out.push_back(static_cast<uint8_t>(b));
        if (tx_to_dut.busy() || rx_from_dut.busy()) last_activity = sim->cycles;
    }
}
