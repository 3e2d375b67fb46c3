// C ABI around the Verilated accelerator top, loaded by tritium/sim/verilated.py with ctypes.
//
// The host hands over a whole Program (host/driver.py: rows of op, addr, word) and this file
// runs it clock by clock without returning to Python, so a tile of thousands of cycles costs
// one foreign call. The per-clock entry points (poke/tick/peek) exist only so a benchmark can
// drive the same model one Python call per clock, as pyverilator-style tools do.
//
// Bus timing matches bus/contract.py and sim/bus.py: a write is taken at the clock edge where `we`
// is high; a read issued with `re` has its data on `rdata` right after that edge.

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "verilated.h"
#include TOP_HEADER
#include ROOT_HEADER
#ifdef TRITIUM_MEM_PORT
#include "mem_port.h"   // the os top's memory port, served from host memory
#endif

// Amaranth names the bus ports bus__addr, ...; Verilator escapes "__" in port names as "___05F".
#define BUS(port) bus___05F##port

namespace {

constexpr int64_t OP_WRITE = 1;
constexpr int64_t OP_READ = 2;
constexpr int64_t OP_WAIT = 3;

// Verilator 5 finds a rising edge by comparing clk with the value it saw at the previous eval.
// Every register of the top is clocked on the rising edge, so the falling-edge eval only
// re-runs the input logic; telling the model "clk was 0" instead saves that whole pass. A
// Verilator without this member gets the plain two-eval clock.
template <typename R, typename = void>
struct HasClkTrigger : std::false_type {};
template <typename R>
struct HasClkTrigger<R, std::void_t<decltype(std::declval<R&>().__Vtrigprevexpr___TOP__clk__0)>>
    : std::true_type {};

struct Device {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<TOP_CLASS> top;
    uint64_t cycles = 0;
    int64_t error_op = -1;
#ifdef TRITIUM_MEM_PORT
    tritium_port::Server port;
#endif

    Device() : ctx(new VerilatedContext), top(new TOP_CLASS(ctx.get(), "top")) {}

    void tick() {
#ifdef TRITIUM_MEM_PORT
        port.drive(top.get());
        port.transfer(top.get());
#endif
        top->clk = 1;
        top->eval();
        top->clk = 0;
        using Root = std::remove_pointer_t<decltype(top->rootp)>;
        if constexpr (HasClkTrigger<Root>::value) {
            top->rootp->__Vtrigprevexpr___TOP__clk__0 = 0;
        } else {
            top->eval();
        }
        ++cycles;
    }

    void idle_bus() {
        top->BUS(we) = 0;
        top->BUS(re) = 0;
    }
};

}  // namespace

extern "C" {

void* tritium_dev_new() {
    auto* d = new Device;
    d->top->clk = 0;
    d->idle_bus();
    d->top->rst = 1;
    d->top->eval();
    d->tick();
    d->tick();
    d->top->rst = 0;
    d->top->eval();
    d->cycles = 0;
    return d;
}

void tritium_dev_free(void* h) {
    auto* d = static_cast<Device*>(h);
    d->top->final();
    delete d;
}

uint64_t tritium_dev_cycles(void* h) { return static_cast<Device*>(h)->cycles; }

// Index of the op that failed in the last execute (-1 if none).
int64_t tritium_dev_error_op(void* h) { return static_cast<Device*>(h)->error_op; }

// Runs n ops; stores read words into reads[0..max_reads). Returns the number of reads, or
// -1 if a wait exceeded wait_limit cycles, -2 on an unknown op, -3 if reads overflow.
int64_t tritium_dev_execute(void* h, const int64_t* ops, int64_t n, uint32_t* reads,
                            int64_t max_reads, int64_t wait_limit) {
    auto* d = static_cast<Device*>(h);
    auto* top = d->top.get();
    int64_t nreads = 0;
    d->error_op = -1;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t op = ops[3 * i], addr = ops[3 * i + 1], word = ops[3 * i + 2];
        switch (op) {
        case OP_WRITE:
#ifdef TRITIUM_MEM_PORT
            if (d->port.mine(addr)) {      // the memory behind the port, not the RTL
                d->port.word(addr) = static_cast<uint32_t>(word);
                break;
            }
#endif
            top->BUS(addr) = static_cast<uint32_t>(addr);
            top->BUS(wdata) = static_cast<uint32_t>(word);
            top->BUS(we) = 1;
            top->BUS(re) = 0;
            d->tick();
            break;
        case OP_READ:
            if (nreads >= max_reads) {
                d->idle_bus();
                d->error_op = i;
                return -3;
            }
#ifdef TRITIUM_MEM_PORT
            if (d->port.mine(addr)) {
                reads[nreads++] = d->port.word(addr);
                break;
            }
#endif
            top->BUS(addr) = static_cast<uint32_t>(addr);
            top->BUS(we) = 0;
            top->BUS(re) = 1;
            d->tick();
            reads[nreads++] = top->BUS(rdata);
            break;
        case OP_WAIT: {
            d->idle_bus();
            int64_t waited = 0;
            while (top->busy) {
                if (waited++ >= wait_limit) {
                    d->error_op = i;
                    return -1;
                }
                d->tick();
            }
            break;
        }
        default:
            d->idle_bus();
            d->error_op = i;
            return -2;
        }
    }
    d->idle_bus();
    return nreads;
}

// --- per-clock access, for the one-call-per-cycle baseline ----------------------------------

void tritium_dev_poke(void* h, uint32_t addr, uint32_t wdata, int we, int re) {
    auto* top = static_cast<Device*>(h)->top.get();
    top->BUS(addr) = addr;
    top->BUS(wdata) = wdata;
    top->BUS(we) = we;
    top->BUS(re) = re;
}

void tritium_dev_tick(void* h) { static_cast<Device*>(h)->tick(); }

uint32_t tritium_dev_rdata(void* h) { return static_cast<Device*>(h)->top->BUS(rdata); }

int tritium_dev_busy(void* h) { return static_cast<Device*>(h)->top->busy; }

#ifdef TRITIUM_MEM_PORT
// The memory behind the port: its layout on bus region 1 (zero-filled) and its timing
// (golden.os_port.PortTiming). Call before the first program.
void tritium_dev_port_layout(void* h, uint64_t row_words, uint64_t word_bits,
                             uint64_t region_bits, uint64_t rows) {
    static_cast<Device*>(h)->port.layout(row_words, word_bits, region_bits, rows);
}

void tritium_dev_port_timing(void* h, uint64_t bytes_per_cycle, uint64_t latency,
                             uint64_t stall_ppm, uint64_t seed, uint64_t depth) {
    static_cast<Device*>(h)->port.timing(bytes_per_cycle, latency, stall_ppm, seed, depth);
}
#endif

}  // extern "C"
