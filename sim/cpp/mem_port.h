// Serves the os top's memory port (hdl/os_top.py) from host memory, for sim/cpp/device.cpp.
//
// golden/os_port.py is the contract and the cycle model this must match exactly: at most
// `depth` accepted requests held, each answered from 1 + latency cycles after it was taken, in
// order; a request needs a whole row of bandwidth credit (refilled by `rate` bytes a cycle);
// requests are refused in the cycles splitmix64(seed ^ i * K) % 1e6 < stall_ppm marks, i
// counting the cycles since the start began; result rows are taken every cycle. A cycle that
// follows an idle one (busy low) begins with i = 0 and full credit, so every start does.
//
// The host reaches the same memory over the bus: operations on region 1 (the os map's
// memory region, bus/os_regmap.py) are served here and never reach the RTL.

#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "verilated.h"

namespace tritium_port {

constexpr uint64_t PPM = 1000000;
constexpr uint64_t STALL_MIX = 0xD1B54A32D192ED03ULL;

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

// Verilator keeps a port of <= 32 bits in an integer, <= 64 in a uint64_t and wider ones in
// VlWide<N> 32-bit words; a row is always a whole number of 32-bit words.
inline void put(IData& port, const uint32_t* w) { port = w[0]; }
inline void put(QData& port, const uint32_t* w) {
    port = static_cast<QData>(w[0]) | static_cast<QData>(w[1]) << 32;
}
template <std::size_t N>
void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
inline void get(const IData& port, uint32_t* w) { w[0] = port; }
inline void get(const QData& port, uint32_t* w) {
    w[0] = static_cast<uint32_t>(port);
    w[1] = static_cast<uint32_t>(port >> 32);
}
template <std::size_t N>
void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}

struct Server {
    // layout of bus region 1: row r, word j at offset r << word_bits | j
    uint64_t row_words = 1, word_bits = 0, region_bits = 5, rows = 0;
    std::vector<uint32_t> mem;
    // timing (golden.os_port.PortTiming)
    uint64_t row_bytes = 4, rate = 4, latency = 0, stall_ppm = 0, seed = 0, depth = 2;
    // state
    std::deque<std::pair<uint64_t, uint64_t>> pending;   // (answered from cycle i, row)
    uint64_t credit = 4, index = 0;
    bool rd_ready = false, rsp_valid = false, was_busy = false;

    void layout(uint64_t words, uint64_t wbits, uint64_t rbits, uint64_t nrows) {
        row_words = words;
        word_bits = wbits;
        region_bits = rbits;
        rows = nrows;
        mem.assign(rows * row_words, 0);
        row_bytes = 4 * row_words;
        rate = credit = row_bytes;
    }

    void timing(uint64_t bytes_per_cycle, uint64_t lat, uint64_t ppm, uint64_t s, uint64_t d) {
        rate = bytes_per_cycle < row_bytes ? bytes_per_cycle : row_bytes;
        latency = lat;
        stall_ppm = ppm;
        seed = s;
        depth = d;
    }

    // Whether a bus address is in region 1, and the memory word it names.
    bool mine(uint64_t addr) const { return (addr >> region_bits) == 1; }
    uint32_t& word(uint64_t addr) {
        const uint64_t off = addr & ((1ULL << region_bits) - 1);
        const uint64_t row = (off >> word_bits) % rows;
        return mem[row * row_words + (off & (row_words - 1))];
    }

    bool stalled() const {
        return stall_ppm && splitmix64(seed ^ (index * STALL_MIX)) % PPM < stall_ppm;
    }

    // Before a clock edge: what the server offers this cycle.
    template <class Top>
    void drive(Top* top) {
        if (!was_busy) {
            index = 0;
            credit = row_bytes;
        }
        rd_ready = !stalled() && credit >= row_bytes && pending.size() < depth;
        rsp_valid = !pending.empty() && pending.front().first <= index;
        top->mem___05Frd_ready = rd_ready;
        top->mem___05Frsp_valid = rsp_valid;
        top->mem___05Fwr_ready = 1;
        if (rsp_valid) put(top->mem___05Frsp_data, &mem[pending.front().second * row_words]);
    }

    // The transfers of this cycle, from the top's outputs (functions of its registers only,
    // so no evaluation is needed between drive and here).
    template <class Top>
    void transfer(Top* top) {
        uint64_t spend = 0;
        if (top->mem___05Fwr_valid) {
            const uint64_t row = static_cast<uint64_t>(top->mem___05Fwr_addr) % rows;
            get(top->mem___05Fwr_data, &mem[row * row_words]);
        }
        if (rsp_valid && top->mem___05Frsp_ready) pending.pop_front();
        if (rd_ready && top->mem___05Frd_valid) {
            const uint64_t row = static_cast<uint64_t>(top->mem___05Frd_addr) % rows;
            pending.emplace_back(index + 1 + latency, row);
            spend = row_bytes;
        }
        credit = credit - spend + rate;
        if (credit > row_bytes) credit = row_bytes;
        was_busy = top->busy;
        if (was_busy) ++index;
    }
};

}  // namespace tritium_port
