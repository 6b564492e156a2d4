// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The kernel path of one RFC 2473 (IPv4/IPv6 in IPv6) or RFC 2003 (in IPv4)
// tunnel: `v6gate_encap` on tc egress of the underlay device, `v6gate_decap`
// on its tc ingress. One loaded object is one tunnel; several tunnels on one
// device chain, each passing on (TC_ACT_UNSPEC) what is not its own.
//
// Verdicts: TC_ACT_OK with the packet rewritten (forwarded), TC_ACT_SHOT with
// a drop reason counted, TC_ACT_OK with the packet untouched (punted: the
// stack hands it to the userspace core's raw sockets, which handles what this
// program does not: probes, extension headers other than the Tunnel
// Encapsulation Limit, outer fragments and IPv4 options), and TC_ACT_UNSPEC
// (not this tunnel's).
//
// The outer headers are byte for byte those of the userspace core
// (crates/dataplane/src/encap.rs): flow label 0, the encapsulation limit
// option only when configured, outer ECN copied from the inner packet.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Debian 12's UAPI headers predate these (Linux 6.3); running kernels know them.
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

#define ETH_LEN 14
#define IPV4_LEN 20
#define IPV6_LEN 40
#define ENCAP_LIMIT_LEN 8
#define MAX_PATHS 64

#define PROTO_ICMP 1
#define PROTO_IPIP 4
#define PROTO_IPV6 41
#define PROTO_DSTOPTS 60
#define PROTO_ICMPV6 58
#define PROTO_KEEPALIVE 253

#define ECN_MASK 3
#define ECN_CE 3

// struct tunnel.flags
#define F_CARRY_V4 (1 << 0)
#define F_CARRY_V6 (1 << 1)
#define F_ENCAP_LIMIT (1 << 2)
#define F_TCLASS_INHERIT (1 << 3)
#define F_PROBE_ECHO (1 << 4)

// Index into `counters`: the first ones, then one per drop reason in the
// order of the userspace core's DropReason.
enum counter {
	C_RX_PACKETS,
	C_RX_BYTES,
	C_TX_PACKETS,
	C_TX_BYTES,
	C_PUNTED,
	C_GSO_TX,
	C_GSO_RX,
	C_ADJUST_FAILED,
	C_DROP_BASE = 8,
};

enum reason {
	R_MALFORMED,
	R_WRONG_FAMILY,
	R_NOT_ROUTED,
	R_ROUTING_LOOP,
	R_SPOOFED_OUTER_SOURCE,
	R_INNER_SOURCE_NOT_ALLOWED,
	R_TOO_BIG,
	R_NO_TUNNEL,
	R_ICMP_RATE_LIMITED,
	R_CONGESTION_NOT_ECT,
	R_UNHANDLED_ICMP,
	R_COUNT,
};

#define COUNTERS (C_DROP_BASE + R_COUNT)

// Per path: rx packets, rx bytes, tx packets, tx bytes.
#define PATH_COUNTERS 4

struct tunnel {
	__u32 flags;
	__u8 encap_limit;
	__u8 hop_limit;
	// Fixed outer DSCP (the ECN bits are the inner packet's).
	__u8 tclass;
	__u8 pad;
};

struct path {
	// 0: unused slot, 4 or 6.
	__u32 family;
	// IPv4 addresses take the first four bytes.
	__u8 local[16];
	__u8 remote[16];
};

struct endpoint {
	__u32 family;
	__u8 addr[16];
};

struct endpoints {
	__u32 family;
	__u8 local[16];
	__u8 remote[16];
};

struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tunnel);
} tunnel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PATHS);
	__type(key, __u32);
	__type(value, struct path);
} paths SEC(".maps");

// The path traffic leaves on: failover is one update of this entry.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

// (local, remote) of every path, to the path's index: accepted outer packets.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PATHS);
	__type(key, struct endpoints);
	__type(value, __u32);
} peers SEC(".maps");

// Every path's local address: outer packets to one of them from an unknown
// source are spoofed.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PATHS);
	__type(key, struct endpoint);
	__type(value, __u32);
} locals SEC(".maps");

// Every path's remote address: inner packets from or to one of them would
// carry the tunnel inside itself.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PATHS);
	__type(key, struct endpoint);
	__type(value, __u32);
} remotes SEC(".maps");

// Inner destinations that enter the tunnel.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4);
	__type(value, __u8);
} routes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, __u8);
} routes6 SEC(".maps");

// Inner sources that may leave the tunnel towards us.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4);
	__type(value, __u8);
} sources4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, __u8);
} sources6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PATHS * PATH_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} path_counters SEC(".maps");

// Identification of outer IPv4 headers: one counter for every datagram, as
// the userspace core and Linux ipip keep.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ipv4_ident SEC(".maps");

static __always_inline void count(__u32 index, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);
	if (value)
		*value += n;
}

static __always_inline void count_path(__u32 path, __u32 which, __u64 n)
{
	__u32 index = path * PATH_COUNTERS + which;
	__u64 *value = bpf_map_lookup_elem(&path_counters, &index);
	if (value)
		*value += n;
}

static __always_inline int drop(enum reason reason)
{
	count(C_DROP_BASE + reason, 1);
	return TC_ACT_SHOT;
}

static __always_inline int punt(void)
{
	count(C_PUNTED, 1);
	return TC_ACT_OK;
}

// Packets a (possibly GSO) skb stands for on the wire.
static __always_inline __u64 segments(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

static __always_inline int is_remote(__u32 family, const void *addr)
{
	struct endpoint key = { .family = family };
	__builtin_memcpy(key.addr, addr, family == 4 ? 4 : 16);
	return bpf_map_lookup_elem(&remotes, &key) != NULL;
}

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

// The one's complement sum of an IPv4 header of `ihl` words at `ip`, which
// the caller has checked lies within the packet for `ihl` words.
static __always_inline __u16 ipv4_sum(const __u16 *ip, __u32 ihl, const void *end)
{
	__u64 sum = 0;
	for (int i = 0; i < 30; i++) {
		if (i >= (int)ihl * 2)
			break;
		if ((const void *)(ip + i + 1) > end)
			break;
		sum += ip[i];
	}
	return fold(sum);
}

struct outer6 {
	struct ipv6hdr ip;
	__u8 opt[ENCAP_LIMIT_LEN];
};

static __always_inline int encap_v6(struct __sk_buff *skb, const struct tunnel *t,
				    const struct path *p, __u8 proto, __u8 tclass,
				    __u16 inner_len)
{
	struct outer6 h = {};
	__u32 ext = (t->flags & F_ENCAP_LIMIT) ? ENCAP_LIMIT_LEN : 0;

	h.ip.version = 6;
	h.ip.priority = tclass >> 4;
	h.ip.flow_lbl[0] = (tclass & 0xf) << 4;
	h.ip.payload_len = bpf_htons(inner_len + ext);
	h.ip.nexthdr = ext ? PROTO_DSTOPTS : proto;
	h.ip.hop_limit = t->hop_limit;
	__builtin_memcpy(&h.ip.saddr, p->local, 16);
	__builtin_memcpy(&h.ip.daddr, p->remote, 16);
	// RFC 2473 §5.1: the option, then a PadN filling the header to 8 bytes.
	h.opt[0] = proto;
	h.opt[1] = 0;
	h.opt[2] = 4;
	h.opt[3] = 1;
	h.opt[4] = t->encap_limit;
	h.opt[5] = 1;
	h.opt[6] = 1;
	h.opt[7] = 0;

	// ENCAP_L3_IPV6 marks the skb SKB_GSO_IPXIP6 with its inner offsets, so
	// a TCP super-packet crosses the underlay whole; FIXED_GSO keeps the
	// segment size, which the route MTU already leaves room for.
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO;
	if (bpf_skb_adjust_room(skb, IPV6_LEN + ext, BPF_ADJ_ROOM_MAC, flags))
		goto failed;
	if (ext) {
		if (bpf_skb_store_bytes(skb, ETH_LEN, &h, IPV6_LEN + ENCAP_LIMIT_LEN, 0))
			goto failed;
	} else {
		if (bpf_skb_store_bytes(skb, ETH_LEN, &h, IPV6_LEN, 0))
			goto failed;
	}
	__be16 type = bpf_htons(ETH_P_IPV6);
	if (bpf_skb_store_bytes(skb, 12, &type, 2, 0))
		goto failed;
	return 0;
failed:
	count(C_ADJUST_FAILED, 1);
	return -1;
}

static __always_inline int encap_v4(struct __sk_buff *skb, const struct tunnel *t,
				    const struct path *p, __u8 proto, __u8 tclass,
				    __u16 inner_len, int dont_frag)
{
	struct iphdr h = {};
	__u32 zero = 0;
	__u32 *ident = bpf_map_lookup_elem(&ipv4_ident, &zero);
	if (!ident)
		return -1;
	__u32 id = __sync_fetch_and_add(ident, 1) + 1;

	h.version = 4;
	h.ihl = 5;
	h.tos = tclass;
	h.tot_len = bpf_htons(IPV4_LEN + inner_len);
	h.id = bpf_htons((__u16)id);
	h.frag_off = dont_frag ? bpf_htons(0x4000) : 0;
	h.ttl = t->hop_limit;
	h.protocol = proto;
	__builtin_memcpy(&h.saddr, p->local, 4);
	__builtin_memcpy(&h.daddr, p->remote, 4);
	h.check = ~ipv4_sum((const __u16 *)&h, 5, (const void *)(&h + 1));

	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
	if (bpf_skb_adjust_room(skb, IPV4_LEN, BPF_ADJ_ROOM_MAC, flags))
		goto failed;
	if (bpf_skb_store_bytes(skb, ETH_LEN, &h, IPV4_LEN, 0))
		goto failed;
	__be16 type = bpf_htons(ETH_P_IP);
	if (bpf_skb_store_bytes(skb, 12, &type, 2, 0))
		goto failed;
	return 0;
failed:
	count(C_ADJUST_FAILED, 1);
	return -1;
}

SEC("classifier")
int v6gate_encap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	struct tunnel *t = bpf_map_lookup_elem(&tunnel, &zero);
	__u32 *active_index = bpf_map_lookup_elem(&active, &zero);
	if (!t || !active_index)
		return TC_ACT_UNSPEC;
	__u32 path_index = *active_index;
	struct path *p = bpf_map_lookup_elem(&paths, &path_index);
	if (!p || !p->family)
		return TC_ACT_UNSPEC;

	__u8 proto, inner_tclass;
	__u16 inner_len;
	int dont_frag = 0;
	__u32 wire_len = skb->len - ETH_LEN;

	// What the kernel routed here but is not the tunnel's (native traffic of
	// the underlay, malformed or not) is passed on untouched: only packets to
	// the tunnel's routes are its own.
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return TC_ACT_UNSPEC;
		if (ip->version != 4 || ip->ihl < 5)
			return TC_ACT_UNSPEC;
		inner_len = bpf_ntohs(ip->tot_len);
		if (inner_len < ip->ihl * 4 || inner_len > wire_len || ip->ihl * 4 > wire_len)
			return TC_ACT_UNSPEC;
		if (!(t->flags & F_CARRY_V4))
			return TC_ACT_UNSPEC;
		struct lpm4 key = { .prefixlen = 32 };
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		if (!bpf_map_lookup_elem(&routes4, &key))
			return TC_ACT_UNSPEC;
		// The underlay's own traffic to a peer (and the userspace core's
		// probes) is addressed to a remote end.
		if (is_remote(4, &ip->saddr) || is_remote(4, &ip->daddr))
			return TC_ACT_UNSPEC;
		proto = PROTO_IPIP;
		inner_tclass = ip->tos;
		dont_frag = (ip->frag_off & bpf_htons(0x4000)) != 0;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return TC_ACT_UNSPEC;
		if (ip6->version != 6)
			return TC_ACT_UNSPEC;
		if (IPV6_LEN + (__u32)bpf_ntohs(ip6->payload_len) > wire_len)
			return TC_ACT_UNSPEC;
		inner_len = IPV6_LEN + bpf_ntohs(ip6->payload_len);
		if (!(t->flags & F_CARRY_V6))
			return TC_ACT_UNSPEC;
		struct lpm6 key = { .prefixlen = 128 };
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		if (!bpf_map_lookup_elem(&routes6, &key))
			return TC_ACT_UNSPEC;
		if (is_remote(6, &ip6->saddr) || is_remote(6, &ip6->daddr))
			return TC_ACT_UNSPEC;
		proto = PROTO_IPV6;
		inner_tclass = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	} else {
		return TC_ACT_UNSPEC;
	}

	// Bytes past the inner packet are not part of it; a GSO packet has none.
	if (wire_len > inner_len && !skb->gso_size) {
		if (bpf_skb_change_tail(skb, ETH_LEN + inner_len, 0))
			return drop(R_MALFORMED);
	}

	__u8 tclass = (t->flags & F_TCLASS_INHERIT)
			      ? inner_tclass
			      : ((t->tclass & ~ECN_MASK) | (inner_tclass & ECN_MASK));
	__u64 segs = segments(skb);
	int err;
	if (p->family == 6)
		err = encap_v6(skb, t, p, proto, tclass, inner_len);
	else
		// RFC 4213 §3.2.1: never DF on IPv6 carried over IPv4.
		err = encap_v4(skb, t, p, proto, tclass, inner_len,
			       proto == PROTO_IPIP && dont_frag);
	if (err)
		return TC_ACT_SHOT;

	count(C_TX_PACKETS, segs);
	count(C_TX_BYTES, inner_len);
	if (segs > 1)
		count(C_GSO_TX, 1);
	if (path_index < MAX_PATHS) {
		count_path(path_index, 2, segs);
		count_path(path_index, 3, inner_len);
	}
	return TC_ACT_OK;
}

// Where the inner packet starts and what the outer header said.
struct outer_view {
	__u32 offset;
	__u32 payload_end;
	__u8 proto;
	__u8 tclass;
	__u32 family;
	__u8 src[16];
	__u8 dst[16];
};

// 1: parsed, 0: not a tunnel packet, -1: a tunnel packet for the stack.
static __always_inline int parse_outer6(struct __sk_buff *skb, struct outer_view *v)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_LEN;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return 0;
	__u32 payload = bpf_ntohs(ip6->payload_len);
	if (ETH_LEN + IPV6_LEN + payload > skb->len)
		return 0;
	v->family = 6;
	v->tclass = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	__builtin_memcpy(v->src, &ip6->saddr, 16);
	__builtin_memcpy(v->dst, &ip6->daddr, 16);
	v->offset = ETH_LEN + IPV6_LEN;
	v->payload_end = ETH_LEN + IPV6_LEN + payload;
	v->proto = ip6->nexthdr;
	if (v->proto == PROTO_IPIP || v->proto == PROTO_IPV6)
		return 1;
	if (v->proto != PROTO_DSTOPTS)
		return 0;
	// The one form ip6tnl and the userspace core send: the encapsulation
	// limit and a PadN of one byte. Any other options go to the stack.
	__u8 *opt = (void *)(ip6 + 1);
	if ((void *)(opt + 2) > end || payload < 2)
		return 0;
	// Every extension header starts with the next one's type.
	if (opt[0] != PROTO_IPIP && opt[0] != PROTO_IPV6)
		return 0;
	if ((void *)(opt + ENCAP_LIMIT_LEN) > end || payload < ENCAP_LIMIT_LEN)
		return -1;
	if (opt[1] != 0 || opt[2] != 4 || opt[3] != 1 || opt[5] != 1 || opt[6] != 1 ||
	    opt[7] != 0)
		return -1;
	v->proto = opt[0];
	v->offset += ENCAP_LIMIT_LEN;
	return 1;
}

static __always_inline int parse_outer4(struct __sk_buff *skb, struct outer_view *v)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_LEN;
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return 0;
	if (ip->protocol != PROTO_IPIP && ip->protocol != PROTO_IPV6)
		return 0;
	__u32 total = bpf_ntohs(ip->tot_len);
	if (total < ip->ihl * 4 || ETH_LEN + total > skb->len)
		return 0;
	v->family = 4;
	v->tclass = ip->tos;
	__builtin_memcpy(v->src, &ip->saddr, 4);
	__builtin_memcpy(v->dst, &ip->daddr, 4);
	v->proto = ip->protocol;
	v->offset = ETH_LEN + IPV4_LEN;
	v->payload_end = ETH_LEN + total;
	// Fragments are reassembled by the stack first; options are rare enough
	// to leave to the userspace core.
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return -1;
	if (ipv4_sum((const __u16 *)ip, 5, end) != 0xffff)
		return -2;
	return 1;
}

SEC("classifier")
int v6gate_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct outer_view v = {};
	__u32 zero = 0;
	int parsed;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	struct tunnel *t = bpf_map_lookup_elem(&tunnel, &zero);
	if (!t)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		parsed = parse_outer6(skb, &v);
	else if (eth->h_proto == bpf_htons(ETH_P_IP))
		parsed = parse_outer4(skb, &v);
	else
		return TC_ACT_UNSPEC;
	if (parsed == 0)
		return TC_ACT_UNSPEC;

	struct endpoints key = { .family = v.family };
	__builtin_memcpy(key.local, v.dst, 16);
	__builtin_memcpy(key.remote, v.src, 16);
	__u32 *path = bpf_map_lookup_elem(&peers, &key);
	if (!path) {
		struct endpoint local = { .family = v.family };
		__builtin_memcpy(local.addr, v.dst, 16);
		if (bpf_map_lookup_elem(&locals, &local))
			return drop(R_SPOOFED_OUTER_SOURCE);
		return TC_ACT_UNSPEC;
	}
	__u32 path_index = *path;
	if (parsed == -2)
		return drop(R_MALFORMED);
	if (parsed < 0)
		return punt();

	// Re-read: the helpers above may not move data, but the verifier wants
	// fresh bounds for a variable offset.
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	__u32 offset = v.offset;
	if (offset > ETH_LEN + IPV6_LEN + ENCAP_LIMIT_LEN)
		return TC_ACT_UNSPEC;
	__u8 *inner = data + offset;
	if ((void *)(inner + 1) > end)
		return drop(R_MALFORMED);
	__u32 room = v.payload_end - offset;

	// Probes go to the userspace core, before any filter: keepalives travel
	// as IPv4 whatever the tunnel carries.
	if (v.proto == PROTO_IPIP && (void *)(inner + 10) <= end && inner[9] == PROTO_KEEPALIVE &&
	    room >= 10)
		return punt();

	__u16 inner_len;
	__u8 inner_tclass;
	__u32 inner_family;
	if (v.proto == PROTO_IPIP) {
		if (!(t->flags & F_CARRY_V4))
			return drop(R_WRONG_FAMILY);
		struct iphdr *ip = (void *)inner;
		if ((void *)(ip + 1) > end || room < IPV4_LEN)
			return drop(R_MALFORMED);
		if (ip->version != 4 || ip->ihl < 5 || ip->ihl * 4 > room)
			return drop(R_MALFORMED);
		inner_len = bpf_ntohs(ip->tot_len);
		if (inner_len < ip->ihl * 4 || inner_len > room)
			return drop(R_MALFORMED);
		if ((void *)inner + ip->ihl * 4 > end)
			return drop(R_MALFORMED);
		if (ipv4_sum((const __u16 *)ip, ip->ihl, end) != 0xffff)
			return drop(R_MALFORMED);
		if ((t->flags & F_PROBE_ECHO) && ip->protocol == PROTO_ICMP)
			return punt();
		struct lpm4 src = { .prefixlen = 32 };
		__builtin_memcpy(src.addr, &ip->saddr, 4);
		if (!bpf_map_lookup_elem(&sources4, &src))
			return drop(R_INNER_SOURCE_NOT_ALLOWED);
		inner_tclass = ip->tos;
		inner_family = 4;
		if ((v.tclass & ECN_MASK) == ECN_CE) {
			if ((inner_tclass & ECN_MASK) == 0)
				return drop(R_CONGESTION_NOT_ECT);
			// RFC 1624 incremental update of the header checksum.
			__u16 old_word = *(__u16 *)ip;
			ip->tos |= ECN_CE;
			__u16 new_word = *(__u16 *)ip;
			__u32 sum = (__u16)~ip->check;
			sum += (__u16)~old_word;
			sum += new_word;
			ip->check = ~fold(sum);
		}
	} else {
		if (!(t->flags & F_CARRY_V6))
			return drop(R_WRONG_FAMILY);
		struct ipv6hdr *ip6 = (void *)inner;
		if ((void *)(ip6 + 1) > end || room < IPV6_LEN || ip6->version != 6)
			return drop(R_MALFORMED);
		inner_len = IPV6_LEN + bpf_ntohs(ip6->payload_len);
		if (IPV6_LEN + (__u32)bpf_ntohs(ip6->payload_len) > room)
			return drop(R_MALFORMED);
		if ((t->flags & F_PROBE_ECHO) && ip6->nexthdr == PROTO_ICMPV6)
			return punt();
		struct lpm6 src = { .prefixlen = 128 };
		__builtin_memcpy(src.addr, &ip6->saddr, 16);
		if (!bpf_map_lookup_elem(&sources6, &src))
			return drop(R_INNER_SOURCE_NOT_ALLOWED);
		inner_tclass = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		inner_family = 6;
		if ((v.tclass & ECN_MASK) == ECN_CE) {
			if ((inner_tclass & ECN_MASK) == 0)
				return drop(R_CONGESTION_NOT_ECT);
			ip6->flow_lbl[0] |= ECN_CE << 4;
		}
	}

	__u64 segs = segments(skb);
	__s32 outer_len = offset - ETH_LEN;
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO |
		      (inner_family == 4 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV4 : BPF_F_ADJ_ROOM_DECAP_L3_IPV6);
	if (bpf_skb_adjust_room(skb, -outer_len, BPF_ADJ_ROOM_MAC, flags)) {
		count(C_ADJUST_FAILED, 1);
		return TC_ACT_SHOT;
	}
	__be16 type = bpf_htons(inner_family == 4 ? ETH_P_IP : ETH_P_IPV6);
	if (bpf_skb_store_bytes(skb, 12, &type, 2, 0)) {
		count(C_ADJUST_FAILED, 1);
		return TC_ACT_SHOT;
	}
	if (skb->len > ETH_LEN + (__u32)inner_len && !skb->gso_size) {
		if (bpf_skb_change_tail(skb, ETH_LEN + inner_len, 0)) {
			count(C_ADJUST_FAILED, 1);
			return TC_ACT_SHOT;
		}
	}

	count(C_RX_PACKETS, segs);
	count(C_RX_BYTES, inner_len);
	if (segs > 1)
		count(C_GSO_RX, 1);
	if (path_index < MAX_PATHS) {
		count_path(path_index, 0, segs);
		count_path(path_index, 1, inner_len);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
