#include "switch/offload.h"

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_net.h>
#include <rte_tcp.h>

#include <algorithm>
#include <cstring>

namespace conduit::sw {

namespace {

constexpr uint64_t kTxOffloadFlags = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_L4_MASK;
// Everything take_guest_offload and the segmenter may set; cleared once completed here.
constexpr uint64_t kTxMetadata = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_L4_MASK |
                                 RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_IP_CKSUM;
// Flags that describe the buffer itself rather than the packet: always kept.
constexpr uint64_t kBufferFlags = RTE_MBUF_F_EXTERNAL | RTE_MBUF_F_INDIRECT;

constexpr uint16_t kIpv6HeaderLen = 40;
constexpr uint16_t kTcpChecksumOffset = 16;
constexpr uint16_t kUdpChecksumOffset = 6;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;
constexpr uint8_t kIpv6Routing = 43;

uint32_t fold(uint32_t sum) {
    sum = (sum & 0xffff) + (sum >> 16);
    return (sum & 0xffff) + (sum >> 16);
}

// The ones' complement sum of the pseudo-header (RFC 768, RFC 793, RFC 8200 8.1), as 16-bit
// words read in host order like rte_raw_cksum's, not yet folded.
uint32_t pseudo_header_sum(const uint8_t* l3, bool ipv4, uint8_t proto, uint32_t l4_len) {
    uint32_t sum = ipv4 ? __rte_raw_cksum(l3 + 12, 8, 0) : __rte_raw_cksum(l3 + 8, 32, 0);
    sum += rte_cpu_to_be_16(proto);
    sum += rte_cpu_to_be_16(static_cast<uint16_t>(l4_len & 0xffff));
    sum += rte_cpu_to_be_16(static_cast<uint16_t>(l4_len >> 16));
    return sum;
}

// The ones' complement sum of `len` bytes from offset `off` of a chain, folded to 16 bits.
// (rte_raw_cksum_mbuf of DPDK 22.11 truncates the partial sum of a segment that starts at an
// odd offset before byte-swapping it; this reduces first.)
uint32_t chain_sum(const rte_mbuf* m, uint32_t off, uint32_t len) {
    while (m != nullptr && off >= m->data_len) {
        off -= m->data_len;
        m = m->next;
    }
    uint32_t sum = 0;
    uint32_t done = 0;
    while (m != nullptr && done < len) {
        const uint32_t n = std::min<uint32_t>(m->data_len - off, len - done);
        uint32_t part =
            fold(__rte_raw_cksum(rte_pktmbuf_mtod_offset(m, const uint8_t*, off), n, 0));
        if (done & 1) {
            // This part's words straddle the previous part's: its bytes sit one position over.
            part = rte_bswap16(static_cast<uint16_t>(part));
        }
        sum += part;
        done += n;
        off = 0;
        m = m->next;
    }
    return fold(sum);
}

bool is_ipv4(uint64_t ol_flags) {
    return (ol_flags & RTE_MBUF_F_TX_IPV4) != 0;
}

// Headers the vhost library and ethdev helpers take the pseudo-header from correctly:
// IPv4 (options included), or IPv6 without extension headers.
bool plain_l3(const rte_mbuf& m) {
    return is_ipv4(m.ol_flags) || m.l3_len == kIpv6HeaderLen;
}

// Whether an IPv6 header chain of `l3_len` bytes holds a routing header with segments left.
bool ipv6_routes(const uint8_t* ip6, uint16_t l3_len) {
    uint8_t next = ip6[6];
    uint16_t off = kIpv6HeaderLen;
    while (off + 8 <= l3_len) {
        const uint8_t* ext = ip6 + off;
        if (next == kIpv6Routing && ext[3] != 0) {
            return true;
        }
        next = ext[0];
        off = static_cast<uint16_t>(off + (ext[1] + 1) * 8);
    }
    return false;
}

}  // namespace

std::string describe_offloads(uint8_t offloads) {
    std::string out;
    auto add = [&out](const char* what) { out += (out.empty() ? "" : ", ") + std::string(what); };
    if ((offloads & (TxCaps::kTcpCsum | TxCaps::kUdpCsum)) ==
        (TxCaps::kTcpCsum | TxCaps::kUdpCsum)) {
        add("csum");
    } else if (offloads & TxCaps::kTcpCsum) {
        add("tcp-csum");
    } else if (offloads & TxCaps::kUdpCsum) {
        add("udp-csum");
    }
    if (offloads & TxCaps::kTso4) {
        add("tso4");
    }
    if (offloads & TxCaps::kTso6) {
        add("tso6");
    }
    return out.empty() ? "none" : out;
}

bool has_tx_offload(const rte_mbuf& m) {
    return (m.ol_flags & kTxOffloadFlags) != 0;
}

bool exclusive(const rte_mbuf& m) {
    for (const rte_mbuf* s = &m; s != nullptr; s = s->next) {
        if (!RTE_MBUF_DIRECT(s) || rte_mbuf_refcnt_read(s) != 1) {
            return false;
        }
    }
    return true;
}

GuestOffload take_guest_offload(rte_mbuf* m) {
    const uint64_t flags = m->ol_flags;
    const bool partial = (flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_NONE;
    const bool gso = (flags & RTE_MBUF_F_RX_LRO) != 0;
    if (!partial && !gso) {
        return GuestOffload::kNone;
    }
    rte_net_hdr_lens lens{};
    const uint32_t ptype =
        rte_net_get_ptype(m, &lens, RTE_PTYPE_L2_MASK | RTE_PTYPE_L3_MASK | RTE_PTYPE_L4_MASK);
    const uint32_t l4 = ptype & RTE_PTYPE_L4_MASK;
    const bool ipv4 = RTE_ETH_IS_IPV4_HDR(ptype);
    const bool ipv6 = RTE_ETH_IS_IPV6_HDR(ptype);
    const uint32_t headers = uint32_t{lens.l2_len} + lens.l3_len + lens.l4_len;
    if ((!ipv4 && !ipv6) || (l4 != RTE_PTYPE_L4_TCP && l4 != RTE_PTYPE_L4_UDP) ||
        headers > rte_pktmbuf_data_len(m)) {
        return GuestOffload::kInvalid;
    }
    if (ipv6 && lens.l3_len > kIpv6HeaderLen &&
        ipv6_routes(rte_pktmbuf_mtod_offset(m, const uint8_t*, lens.l2_len), lens.l3_len)) {
        return GuestOffload::kInvalid;
    }
    uint64_t tx = ipv4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6;
    m->l2_len = lens.l2_len;
    m->l3_len = lens.l3_len;
    m->l4_len = lens.l4_len;
    GuestOffload kind = GuestOffload::kChecksum;
    if (gso) {
        if (l4 != RTE_PTYPE_L4_TCP || m->tso_segsz < kMinGsoSize) {
            return GuestOffload::kInvalid;
        }
        if (rte_pktmbuf_pkt_len(m) - headers > m->tso_segsz) {
            tx |= RTE_MBUF_F_TX_TCP_SEG;
            kind = GuestOffload::kGso;
        }
    }
    tx |= l4 == RTE_PTYPE_L4_TCP ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM;
    if (kind != GuestOffload::kGso) {
        m->tso_segsz = 0;
    }
    m->ol_flags = (flags & kBufferFlags) | tx;
    return kind;
}

TxFit fit_frame(const rte_mbuf& m, const TxCaps& caps) {
    const uint64_t flags = m.ol_flags;
    if (flags & RTE_MBUF_F_TX_TCP_SEG) {
        const uint32_t segment =
            static_cast<uint32_t>(m.l2_len + m.l3_len + m.l4_len + m.tso_segsz);
        if (segment > caps.max_frame) {
            return TxFit::kTooBig;
        }
        const uint8_t tso = is_ipv4(flags) ? TxCaps::kTso4 : TxCaps::kTso6;
        return plain_l3(m) && caps.has(tso) ? TxFit::kPassGso : TxFit::kSegment;
    }
    if (rte_pktmbuf_pkt_len(&m) > caps.max_frame) {
        return TxFit::kTooBig;
    }
    if (flags & RTE_MBUF_F_TX_L4_MASK) {
        const uint8_t csum = (flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_TCP_CKSUM
                                 ? TxCaps::kTcpCsum
                                 : TxCaps::kUdpCsum;
        return plain_l3(m) && caps.has(csum) ? TxFit::kPassChecksum : TxFit::kChecksum;
    }
    return TxFit::kAsIs;
}

void complete_checksum(rte_mbuf* m) {
    const bool tcp = (m->ol_flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_TCP_CKSUM;
    const bool ipv4 = is_ipv4(m->ol_flags);
    const auto l3_len = static_cast<uint32_t>(m->l3_len);
    const auto l4_off = static_cast<uint32_t>(m->l2_len) + l3_len;
    const auto* l3 = rte_pktmbuf_mtod_offset(m, const uint8_t*, m->l2_len);
    // The L4 length the IP header states (a frame may carry padding after it).
    const uint32_t stated =
        ipv4 ? rte_be_to_cpu_16(reinterpret_cast<const rte_ipv4_hdr*>(l3)->total_length) - l3_len
             : rte_be_to_cpu_16(reinterpret_cast<const rte_ipv6_hdr*>(l3)->payload_len) +
                   kIpv6HeaderLen - l3_len;
    const uint32_t l4_len = std::min(stated, rte_pktmbuf_pkt_len(m) - l4_off);
    auto* field = rte_pktmbuf_mtod_offset(m, uint16_t*,
                                          l4_off + (tcp ? kTcpChecksumOffset : kUdpChecksumOffset));
    *field = 0;
    const uint32_t sum = pseudo_header_sum(l3, ipv4, tcp ? IPPROTO_TCP : IPPROTO_UDP, l4_len) +
                         chain_sum(m, l4_off, l4_len);
    uint16_t checksum = static_cast<uint16_t>(~fold(sum));
    if (!tcp && checksum == 0) {
        checksum = 0xffff;  // 0 means "no checksum" in UDP (and is forbidden over IPv6)
    }
    *field = checksum;
    m->ol_flags &= ~kTxMetadata;
}

TcpSegmenter::TcpSegmenter(const rte_mbuf& gso, rte_mempool* pool, bool partial_checksum)
    : src_(gso),
      pool_(pool),
      partial_(partial_checksum),
      ipv4_(is_ipv4(gso.ol_flags)),
      l2_(gso.l2_len),
      l3_(gso.l3_len),
      l4_(gso.l4_len),
      headers_(static_cast<uint16_t>(l2_ + l3_ + l4_)),
      mss_(gso.tso_segsz),
      payload_(rte_pktmbuf_pkt_len(&gso) - headers_),
      cursor_(&gso),
      cursor_off_(headers_) {
    const auto* l3 = rte_pktmbuf_mtod_offset(&gso, const uint8_t*, l2_);
    const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(l3 + l3_);
    seq_ = rte_be_to_cpu_32(tcp->sent_seq);
    if (ipv4_) {
        ip_id_ = rte_be_to_cpu_16(reinterpret_cast<const rte_ipv4_hdr*>(l3)->packet_id);
    }
}

rte_mbuf* TcpSegmenter::next() {
    const uint32_t len = std::min<uint32_t>(mss_, payload_ - offset_);
    rte_mbuf* head = rte_pktmbuf_alloc(pool_);
    if (head == nullptr) {
        return nullptr;
    }
    std::memcpy(rte_pktmbuf_mtod(head, uint8_t*), rte_pktmbuf_mtod(&src_, const uint8_t*),
                headers_);
    head->data_len = headers_;
    head->pkt_len = headers_;
    rte_mbuf* tail = head;
    uint32_t left = len;
    while (left != 0) {
        if (rte_pktmbuf_tailroom(tail) == 0) {
            rte_mbuf* more = rte_pktmbuf_alloc(pool_);
            if (more == nullptr) {
                rte_pktmbuf_free(head);
                return nullptr;
            }
            tail->next = more;
            tail = more;
            ++head->nb_segs;
        }
        while (cursor_off_ == cursor_->data_len) {
            cursor_ = cursor_->next;
            cursor_off_ = 0;
        }
        const uint32_t n = std::min({left, uint32_t{rte_pktmbuf_tailroom(tail)},
                                     uint32_t{cursor_->data_len} - cursor_off_});
        std::memcpy(rte_pktmbuf_mtod_offset(tail, uint8_t*, tail->data_len),
                    rte_pktmbuf_mtod_offset(cursor_, const uint8_t*, cursor_off_), n);
        tail->data_len = static_cast<uint16_t>(tail->data_len + n);
        head->pkt_len += n;
        cursor_off_ += n;
        left -= n;
    }

    auto* l3 = rte_pktmbuf_mtod_offset(head, uint8_t*, l2_);
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(l3 + l3_);
    const uint32_t l4_len = l4_ + len;
    if (ipv4_) {
        auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
        ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(l3_ + l4_len));
        ip->packet_id = rte_cpu_to_be_16(static_cast<uint16_t>(ip_id_ + index_));
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
    } else {
        auto* ip = reinterpret_cast<rte_ipv6_hdr*>(l3);
        ip->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(l3_ - kIpv6HeaderLen + l4_len));
    }
    tcp->sent_seq = rte_cpu_to_be_32(seq_ + offset_);
    if (offset_ + len < payload_) {
        tcp->tcp_flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    }
    if (index_ != 0) {
        tcp->tcp_flags &= static_cast<uint8_t>(~kTcpCwr);
    }
    const uint32_t pseudo = pseudo_header_sum(l3, ipv4_, IPPROTO_TCP, l4_len);
    if (partial_) {
        // What a sender leaves for a checksumming device: the pseudo-header sum, folded.
        tcp->cksum = static_cast<uint16_t>(fold(pseudo));
        head->ol_flags =
            (ipv4_ ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6) | RTE_MBUF_F_TX_TCP_CKSUM;
        head->l2_len = l2_;
        head->l3_len = l3_;
        head->l4_len = l4_;
    } else {
        tcp->cksum = 0;
        tcp->cksum = static_cast<uint16_t>(~fold(pseudo + chain_sum(head, l2_ + l3_, l4_len)));
    }
    offset_ += len;
    ++index_;
    return head;
}

void TxFitter::push(rte_mbuf* m, BurstSender& out) {
    out_[count_++] = m;
    if (count_ == kOutBurst) {
        flush(out);
    }
}

void TxFitter::flush(BurstSender& out) {
    if (count_ != 0) {
        out.send(out_, count_);
        count_ = 0;
    }
}

void TxFitter::send(const TxCaps& caps, rte_mbuf** pkts, uint16_t count, PortCounters& counters,
                    BurstSender& out) {
    // The common case, complete frames that fit, costs one look at each mbuf header the
    // port reads anyway, and hands the burst on as it is.
    uint16_t first = 0;
    while (first < count && !has_tx_offload(*pkts[first]) &&
           rte_pktmbuf_pkt_len(pkts[first]) <= caps.max_frame) {
        ++first;
    }
    if (first == count) {
        out.send(pkts, count);
        return;
    }
    for (uint16_t i = 0; i < first; ++i) {
        push(pkts[i], out);
    }
    for (uint16_t i = first; i < count; ++i) {
        fit_one(pkts[i], caps, counters, out);
    }
    flush(out);
}

void TxFitter::fit_one(rte_mbuf* m, const TxCaps& caps, PortCounters& counters, BurstSender& out) {
    switch (fit_frame(*m, caps)) {
        case TxFit::kAsIs:
            push(m, out);
            return;
        case TxFit::kPassChecksum:
            counters.tx_csum_passed.add(1);
            push(m, out);
            return;
        case TxFit::kPassGso:
            counters.tx_gso_passed.add(1);
            push(m, out);
            return;
        case TxFit::kTooBig:
            counters.drop_tx_too_big.add(1);
            rte_pktmbuf_free(m);
            return;
        case TxFit::kChecksum: {
            rte_mbuf* own = m;
            if (!exclusive(*m)) {
                // Another output may still read this frame (and its partial checksum).
                own = rte_pktmbuf_copy(m, pool_, 0, UINT32_MAX);
                rte_pktmbuf_free(m);
                if (own == nullptr) {
                    counters.drop_tx_offload_failed.add(1);
                    return;
                }
            }
            complete_checksum(own);
            counters.tx_csum_software.add(1);
            push(own, out);
            return;
        }
        case TxFit::kSegment: {
            const bool tcp_csum = caps.has(TxCaps::kTcpCsum) && plain_l3(*m);
            TcpSegmenter segmenter(*m, pool_, tcp_csum);
            uint64_t made = 0;
            while (!segmenter.done()) {
                rte_mbuf* segment = segmenter.next();
                if (segment == nullptr) {
                    counters.drop_tx_offload_failed.add(1);
                    break;
                }
                ++made;
                push(segment, out);
            }
            counters.tx_gso_software.add(1);
            counters.tx_gso_segments.add(made);
            rte_pktmbuf_free(m);
            return;
        }
    }
}

}  // namespace conduit::sw
