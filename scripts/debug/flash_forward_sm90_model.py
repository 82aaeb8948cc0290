#!/usr/bin/env python3
# Model of kernels/attention/flash_forward_sm90.cu (the wgmma forward, hd 64): every thread of one block
# run in plain Python floats with the documented wgmma fragment layouts (S and O accumulators: rows
# 16 w + g (+8), columns 8 j + 2 t (+1); P as the mma.m16n8k16 A fragment), the masks, the online
# softmax and the epilogue exactly as written, the products done as exact matrix products. It matches
# a direct softmax to ~1e-15 (2026-12-03), so the kernel's GPU parity failure is not in its per-thread
# logic but in how the products meet the registers (docs/perf-notes.md). Runs in ~5 s:
#   python3 scripts/debug/flash_forward_sm90_model.py
import math, random
D, BM, BN = 64, 128, 64
def run(T, W, seed=1):
    rnd = random.Random(seed)
    Q = [[rnd.gauss(0,1) for _ in range(D)] for _ in range(T)]
    K = [[rnd.gauss(0,1) for _ in range(D)] for _ in range(T)]
    V = [[rnd.gauss(0,1) for _ in range(D)] for _ in range(T)]
    scale = 1/math.sqrt(D); L2E = 1/math.log(2); sl2 = scale*L2E
    nblocks = (T + BM - 1)//BM
    OUT = [[None]*D for _ in range(T)]; LSE = [None]*T
    for m_block in range(nblocks):
        m0 = m_block*BM
        m_last = min(m0+BM, T)-1
        key_lo = max(0, m0-W+1) if W > 0 else 0
        key_hi = m_last+1
        n_first, n_end = key_lo//BN, (key_hi+BN-1)//BN
        for wg in range(2):
            # per-thread state
            th = {}
            for wi in range(4):
                for lane in range(32):
                    th[(wi,lane)] = dict(o=[0.0]*32, s=[0.0]*32, rmax=[-math.inf]*2, rsum=[0.0]*2, pf=None)
            qrow = lambda r: Q[r] if r < T else [0.0]*D
            for n in range(n_first, n_end):
                n0 = n*BN
                krow = lambda j: K[j] if j < T else [0.0]*D
                vrow = lambda j: V[j] if j < T else [0.0]*D
                # S (64 x 64) for this warpgroup
                S = [[sum(a*b for a,b in zip(qrow(m0+wg*64+r), krow(n0+c))) for c in range(BN)] for r in range(64)]
                needs_mask = (n0+BN-1 > m0) or (n0+BN > T) or (W > 0 and n0 < m_last-W+1)
                P = [[0.0]*BN for _ in range(64)]
                for (wi,lane), st in th.items():
                    g, t = lane>>2, lane&3
                    row_a = m0 + wg*64 + wi*16 + g
                    s = st['s']
                    for j in range(8):
                        for e in range(4):
                            r = wi*16 + g + (8 if e >= 2 else 0)
                            s[4*j+e] = S[r][8*j+2*t+(e&1)]
                    if needs_mask:
                        for j in range(8):
                            for e in range(4):
                                key = n0 + j*8 + 2*t + (e&1)
                                row = row_a if e < 2 else row_a+8
                                ok = key <= row and key < T and (W == 0 or key > row-W)
                                if not ok: s[4*j+e] = -math.inf
                    st['tmax'] = [max(max(s[4*j], s[4*j+1]) for j in range(8)), max(max(s[4*j+2], s[4*j+3]) for j in range(8))]
                # quad reduction of tile max
                for (wi,lane), st in th.items():
                    base = lane & ~3
                    st['tmax_r'] = [max(th[(wi,base+x)]['tmax'][r] for x in range(4)) for r in range(2)]
                for (wi,lane), st in th.items():
                    g, t = lane>>2, lane&3
                    corr=[0,0]; ms=[0,0]
                    for r in range(2):
                        nm = max(st['rmax'][r], st['tmax_r'][r])
                        ms[r] = 0.0 if nm == -math.inf else nm*sl2
                        corr[r] = 0.0 if st['rmax'][r] == -math.inf else 2**(st['rmax'][r]*sl2 - ms[r])
                        st['rmax'][r] = nm
                        st['rsum'][r] *= corr[r]
                    o = st['o']
                    for i in range(8):
                        o[4*i+0]*=corr[0]; o[4*i+1]*=corr[0]; o[4*i+2]*=corr[1]; o[4*i+3]*=corr[1]
                    s = st['s']
                    pf = [[None]*4 for _ in range(4)]
                    def ex(x, m): return 0.0 if x == -math.inf else 2**(x*sl2 - m)
                    for j in range(8):
                        p0=ex(s[4*j],ms[0]); p1=ex(s[4*j+1],ms[0]); p2=ex(s[4*j+2],ms[1]); p3=ex(s[4*j+3],ms[1])
                        st['rsum'][0]+=p0+p1; st['rsum'][1]+=p2+p3
                        pf[j//2][(j&1)*2+0]=(p0,p1); pf[j//2][(j&1)*2+1]=(p2,p3)
                    # scatter this thread's A fragments into P per the mma.m16n8k16 A layout
                    for kk in range(4):
                        a = pf[kk]
                        r0 = wi*16+g
                        P[r0][16*kk+2*t], P[r0][16*kk+2*t+1] = a[0]
                        P[r0+8][16*kk+2*t], P[r0+8][16*kk+2*t+1] = a[1]
                        P[r0][16*kk+8+2*t], P[r0][16*kk+8+2*t+1] = a[2]
                        P[r0+8][16*kk+8+2*t], P[r0+8][16*kk+8+2*t+1] = a[3]
                # O_wg += P V (as a matrix), distributed back by the accumulator layout
                PV = [[sum(P[r][c]*vrow(n0+c)[d] for c in range(BN)) for d in range(D)] for r in range(64)]
                for (wi,lane), st in th.items():
                    g, t = lane>>2, lane&3
                    for i in range(8):
                        for e in range(4):
                            r = wi*16+g+(8 if e>=2 else 0)
                            st['o'][4*i+e] += PV[r][8*i+2*t+(e&1)]
            # epilogue
            for (wi,lane), st in th.items():
                g, t = lane>>2, lane&3
                base = lane & ~3
                for r in range(2):
                    ssum = sum(th[(wi,base+x)]['rsum'][r] for x in range(4))
                    inv = 1/ssum if ssum > 0 else 0
                    row = m0 + wg*64 + wi*16 + g + r*8
                    if row >= T: continue
                    for i in range(8):
                        OUT[row][8*i+2*t] = st['o'][4*i+2*r]*inv
                        OUT[row][8*i+2*t+1] = st['o'][4*i+2*r+1]*inv
                    if t == 0:
                        LSE[row] = (st['rmax'][r]*sl2 + math.log2(ssum))/L2E if ssum > 0 else -math.inf
    # reference
    err_o = err_l = 0.0
    for i in range(T):
        keys = [j for j in range(T) if j <= i and (W == 0 or j > i-W)]
        sc = [sum(a*b for a,b in zip(Q[i],K[j]))*scale for j in keys]
        mx = max(sc); w = [math.exp(x-mx) for x in sc]; z = sum(w)
        lse = mx + math.log(z)
        o = [sum(w[a]*V[keys[a]][d] for a in range(len(keys)))/z for d in range(D)]
        err_l = max(err_l, abs(lse - LSE[i]))
        err_o = max(err_o, max(abs(o[d]-OUT[i][d]) for d in range(D)))
    print(f"T={T} W={W}: max |out err| {err_o:.2e}, max |lse err| {err_l:.2e}")
for T, W in [(128, 0), (128, 1), (128, 100), (200, 0), (300, 70)]:
    run(T, W)
