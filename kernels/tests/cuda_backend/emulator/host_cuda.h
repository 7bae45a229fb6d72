// Runs ferrofold's CUDA C kernels on the CPU, so that tests on machines without a GPU execute
// the kernels' own source, not only a Rust twin of their maths. Prepended (with the registry
// the Rust harness writes after the kernel source) to one translation unit that the system's
// C++ compiler builds as a shared library (kernels/tests/cuda_backend/emulator/mod.rs).
//
// Each block's threads are fibers on one OS thread (started with ucontext, then switched with
// _setjmp/_longjmp, which unlike swapcontext make no system call), switched only at
// __syncthreads, __syncwarp and warp shuffles: barrier semantics hold exactly, runs are
// deterministic, and a barrier that some thread never reaches is reported as a deadlock rather
// than hanging. Blocks run one after another, so a `__shared__` array (a function-local static
// here) is the block's own. The fibers live on between blocks and launches (only their first
// entry costs a system call). The state is global: the Rust harness runs one launch of a
// program at a time. A warp shuffle that reads a lane that has returned, or a
// lane outside the block, is reported: on a GPU it reads garbage. This is not a performance
// model: it checks indexing, tiling, tails, masking and the arithmetic.

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>
#include <vector>

#define FF_HOST_EMULATION 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x, y, z;
};

struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};

inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}

namespace ff_emu {

[[noreturn]] inline void fail(const char* what) {
    fprintf(stderr, "CUDA emulation: %s\n", what);
    abort();
}

struct Barrier {
    int expected = 0;
    int arrived = 0;
    unsigned generation = 0;
};

struct Fiber {
    ucontext_t context;  // the first entry only
    jmp_buf resume;      // where it waits
    std::vector<char> stack;
    dim3 index;
    bool started = false;
    bool done = false;
};

constexpr size_t STACK_BYTES = 256 * 1024;

struct Block {
    std::vector<Fiber> fibers;
    Barrier block;
    std::vector<Barrier> warps;
    // Shuffle slots, two per thread: consecutive shuffles alternate, so one barrier per shuffle
    // suffices (a lane can reach the shuffle after next only once every lane has read this one).
    std::vector<float> exchange;
    std::vector<unsigned> shuffles;  // shuffles done per thread
    ucontext_t scheduler;
    jmp_buf scheduler_resume;
    int current = 0;
    unsigned long long progress = 0;
    void (*entry)(void**) = nullptr;
    void** params = nullptr;
};

inline Block& block() {
    static Block b;
    return b;
}

inline dim3 grid_dim = {1, 1, 1};
inline dim3 block_dim = {1, 1, 1};
inline dim3 block_index = {0, 0, 0};

inline Fiber& current_fiber() { return block().fibers[block().current]; }

inline int linear_thread() { return block().current; }

// From a fiber back to the scheduler.
inline void yield() {
    Block& b = block();
    if (_setjmp(b.fibers[b.current].resume) == 0) _longjmp(b.scheduler_resume, 1);
}

// From the scheduler into fiber `t` until it yields or returns.
inline void resume(int t) {
    Block& b = block();
    b.current = t;
    Fiber& f = b.fibers[t];
    if (_setjmp(b.scheduler_resume) != 0) return;
    if (f.started) _longjmp(f.resume, 1);
    f.started = true;
    swapcontext(&b.scheduler, &f.context);  // its first entry; it comes back by _longjmp
}

inline void release(Barrier& barrier) {
    barrier.arrived = 0;
    ++barrier.generation;
    ++block().progress;
}

inline void arrive_and_wait(Barrier& barrier) {
    const unsigned generation = barrier.generation;
    ++block().progress;
    if (++barrier.arrived == barrier.expected) {
        release(barrier);
        return;
    }
    while (barrier.generation == generation) yield();
}

// A returning thread leaves every barrier it belongs to.
inline void leave(Barrier& barrier) {
    --barrier.expected;
    if (barrier.arrived > 0 && barrier.arrived >= barrier.expected) release(barrier);
}

inline Barrier& my_warp() { return block().warps[linear_thread() / 32]; }

inline float shuffle_xor(float value, int lane_mask) {
    Block& b = block();
    const int me = linear_thread();
    const int partner = (me & ~31) | ((me & 31) ^ lane_mask);
    if (partner >= (int)b.fibers.size()) fail("warp shuffle with a lane outside the block");
    const unsigned n = b.shuffles[me]++;
    b.exchange[2 * me + (n & 1)] = value;
    arrive_and_wait(my_warp());
    // A partner that returned before this shuffle left the barrier instead of arriving.
    if (b.shuffles[partner] <= n) fail("warp shuffle reads a lane that has returned");
    return b.exchange[2 * partner + (n & 1)];
}

// A fiber runs its thread of every block it is resumed for.
inline void fiber_main() {
    Block& b = block();
    for (;;) {
        b.entry(b.params);
        current_fiber().done = true;
        ++b.progress;
        leave(b.block);
        leave(my_warp());
        yield();  // resumed for the next block
    }
}

// One block: every thread a fiber, resumed in turn until all have returned.
inline void run_block(int threads) {
    Block& b = block();
    if ((int)b.fibers.size() != threads) {
        b.fibers = std::vector<Fiber>(threads);
        for (Fiber& f : b.fibers) {
            f.stack.resize(STACK_BYTES);
            getcontext(&f.context);
            f.context.uc_stack.ss_sp = f.stack.data();
            f.context.uc_stack.ss_size = f.stack.size();
            f.context.uc_link = nullptr;
            makecontext(&f.context, fiber_main, 0);
        }
    }
    b.exchange.assign(2 * threads, 0.0f);
    b.shuffles.assign(threads, 0);
    b.block = Barrier{threads, 0, 0};
    b.warps.assign((threads + 31) / 32, Barrier{});
    for (int t = 0; t < threads; ++t) ++b.warps[t / 32].expected;
    for (int t = 0; t < threads; ++t) {
        Fiber& f = b.fibers[t];
        f.done = false;
        f.index = {t % block_dim.x, (t / block_dim.x) % block_dim.y,
                   t / (block_dim.x * block_dim.y)};
    }
    for (int live = threads; live > 0;) {
        const unsigned long long before = b.progress;
        live = 0;
        for (int t = 0; t < threads; ++t) {
            if (b.fibers[t].done) continue;
            resume(t);
            live += !b.fibers[t].done;
        }
        if (live > 0 && b.progress == before)
            fail("deadlock: the block's live threads wait on a barrier that others never reach");
    }
}

inline void launch(void (*entry)(void**), const unsigned* grid, const unsigned* threads,
                   void** params) {
    grid_dim = {grid[0], grid[1], grid[2]};
    block_dim = {threads[0], threads[1], threads[2]};
    Block& b = block();
    b.entry = entry;
    b.params = params;
    for (unsigned z = 0; z < grid[2]; ++z)
        for (unsigned y = 0; y < grid[1]; ++y)
            for (unsigned x = 0; x < grid[0]; ++x) {
                block_index = {x, y, z};
                run_block((int)(threads[0] * threads[1] * threads[2]));
            }
}

// A kernel's parameters from cuLaunchKernel-style pointers, each copied by value.
template <typename... A, size_t... I>
void call_unpacked(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::decay_t<A>*>(params[I])...);
}

template <typename... A> void call_with_params(void (*kernel)(A...), void** params) {
    call_unpacked(kernel, params, std::index_sequence_for<A...>{});
}

template <auto Kernel> void entry(void** params) { call_with_params(Kernel, params); }

}  // namespace ff_emu

#define threadIdx (ff_emu::current_fiber().index)
#define blockIdx (ff_emu::block_index)
#define blockDim (ff_emu::block_dim)
#define gridDim (ff_emu::grid_dim)

inline void __syncthreads() { ff_emu::arrive_and_wait(ff_emu::block().block); }
inline void __syncwarp(unsigned = 0xffffffffu) { ff_emu::arrive_and_wait(ff_emu::my_warp()); }
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
    return ff_emu::shuffle_xor(value, lane_mask);
}
