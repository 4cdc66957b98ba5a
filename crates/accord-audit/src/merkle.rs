//! The RFC 9162 (Certificate Transparency 2.0) Merkle tree, §2.1: tree
//! hash, inclusion proofs and consistency proofs, over SHA-256.
//!
//! Why this tree and not a hash chain: a chain proves that entry *i* belongs
//! to the log only by handing over every entry after it, and proves that a
//! newer head extends an older one only by replaying the whole gap. The
//! RFC 9162 tree does both in O(log n) hashes, so a gateway can give each
//! response a short receipt (its entry's inclusion proof against the signed
//! head of its group commit) and the registry can check that each new
//! checkpoint extends the previous one (a consistency proof) without ever
//! holding the log. The same tree is used by Certificate Transparency,
//! Trillian, Sigsum and Go's checksum database, so its algorithms are
//! well-studied and there are public test vectors, which the tests here use.
//!
//! The hashing is RFC 9162's, with domain separation between leaves and
//! interior nodes (so a node can never be passed off as a leaf):
//!
//! - a leaf's hash is `SHA-256(0x00 || leaf bytes)` ([`hash_leaf`]),
//! - an interior node's is `SHA-256(0x01 || left || right)` ([`hash_children`]),
//! - the tree of `n > 1` leaves splits at `k`, the largest power of two
//!   smaller than `n`: `MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))`,
//! - the empty tree's hash is `SHA-256("")` ([`EMPTY_ROOT`]).
//!
//! Everything here works on leaf *hashes*: what a leaf contains (an
//! [`AuditEntry`](crate::AuditEntry)'s canonical bytes) is the caller's
//! business. Proof generation follows §2.1.3.1 (`PATH`) and §2.1.4.1
//! (`PROOF`/`SUBPROOF`), verification follows the bit-twiddling algorithms
//! of §2.1.3.2 and §2.1.4.2 step by step, so that proofs interoperate with
//! any other RFC 9162 implementation.
//!
//! Two forms of the tree serve the gateway, which must never need the whole
//! log in memory:
//!
//! - [`CompactRange`]: the roots of the perfect subtrees that make up the
//!   tree so far (one per set bit of the size, so at most 64 hashes).
//!   Appending is amortized O(1) hashing, the root is O(log n).
//! - [`Batch`]: a group commit, i.e. the compact range before the commit
//!   plus the leaf hashes it appends. It yields the new root, the inclusion
//!   proof of every new entry and the consistency proof from the old size,
//!   all from O(log n + batch) data, because every node those proofs need
//!   lies either inside the batch or is one of the compact range's subtrees.
//!
//! The free functions [`inclusion_proof`] and [`consistency_proof`] take all
//! leaf hashes; they are the reference (and what a tool holding a whole log
//! uses), and the tests check [`Batch`] against them.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why a proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of size {size} was asked for, but only {available} leaves are available")]
    NotEnoughLeaves { size: u64, available: u64 },
    #[error("the old size {old_size} is larger than the new size {new_size}")]
    SizesReversed { old_size: u64, new_size: u64 },
    #[error("a compact range of size {size} has {expected} subtree hashes, {found} were given")]
    WrongPeakCount {
        size: u64,
        expected: usize,
        found: usize,
    },
    #[error("leaf index {index} is before the batch, which starts at {start}")]
    BeforeBatch { index: u64, start: u64 },
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn hash_leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `k`: the largest power of two smaller than `n` (for `n >= 2`), where the
/// tree of `n` leaves splits.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of a list of leaf hashes (RFC 9162 §2.1.1).
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => EMPTY_ROOT,
        [only] => *only,
        _ => {
            let k = split(leaf_hashes.len() as u64) as usize;
            hash_children(&root(&leaf_hashes[..k]), &root(&leaf_hashes[k..]))
        }
    }
}

/// Where proof generation gets the hash of the subtree over leaves
/// `[start, end)`. Proof generation only ever asks for nodes of the tree
/// (ranges produced by splitting at `k`), never for arbitrary ranges.
trait NodeSource {
    fn node(&self, start: u64, end: u64) -> Result<Hash, ProofError>;
}

/// Every leaf hash in memory: each node is hashed from its leaves.
struct AllLeaves<'a>(&'a [Hash]);

impl NodeSource for AllLeaves<'_> {
    fn node(&self, start: u64, end: u64) -> Result<Hash, ProofError> {
        Ok(root(&self.0[start as usize..end as usize]))
    }
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[start:end])`, iteratively: walk from the
/// root down to leaf `index`, collecting each sibling; the proof lists them
/// from the leaf up, so the walk's order is reversed at the end.
fn path(
    index: u64,
    mut start: u64,
    mut end: u64,
    nodes: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    let mut siblings = Vec::with_capacity(64 - (end - start).leading_zeros() as usize);
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            siblings.push(nodes.node(start + k, end)?);
            end = start + k;
        } else {
            siblings.push(nodes.node(start, start + k)?);
            start += k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[start:end], b)`, iteratively, for
/// `0 < m <= end - start`; the proof lists the deepest node first.
fn subproof(
    mut m: u64,
    mut start: u64,
    end: u64,
    nodes: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    let mut end = end;
    let mut complete = true; // RFC 9162's `b`: is D[start:start+m] the whole old tree?
    let mut proof = Vec::new();
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(nodes.node(start, end)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(nodes.node(start + k, end)?);
            end = start + k;
        } else {
            proof.push(nodes.node(start, start + k)?);
            m -= k;
            start += k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The inclusion proof (audit path) of leaf `index` in the tree made of the
/// first `size` of `leaf_hashes` (RFC 9162 §2.1.3.1). O(size) hashing.
pub fn inclusion_proof(
    leaf_hashes: &[Hash],
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    let available = leaf_hashes.len() as u64;
    if size > available {
        return Err(ProofError::NotEnoughLeaves { size, available });
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    path(index, 0, size, &AllLeaves(leaf_hashes))
}

/// The consistency proof that the tree of the first `old_size` leaves is a
/// prefix of the tree of the first `new_size` (RFC 9162 §2.1.4.1). Empty
/// when `old_size` is 0 or equals `new_size`. O(new_size) hashing.
pub fn consistency_proof(
    leaf_hashes: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    let available = leaf_hashes.len() as u64;
    if new_size > available {
        return Err(ProofError::NotEnoughLeaves {
            size: new_size,
            available,
        });
    }
    if old_size > new_size {
        return Err(ProofError::SizesReversed { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    subproof(old_size, 0, new_size, &AllLeaves(leaf_hashes))
}

/// Checks an inclusion proof: that `leaf_hash` is leaf `index` of the tree
/// of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// The size itself is not proven: it must come from the same signed
/// checkpoint as the root.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    // 1. The index must be in the tree.
    if index >= size {
        return false;
    }
    // 2.–3. fn is the leaf's position, sn the last position, on each level.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    // 4. Climb one level per proof element.
    for p in proof {
        // a. More elements than levels.
        if sn == 0 {
            return false;
        }
        // b. A right child, or the last node of its level (whose parent,
        //    on the right edge, may sit several levels higher).
        if fn_ & 1 == 1 || fn_ == sn {
            r = hash_children(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = hash_children(&r, p);
        }
        // c.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. Every level used, and the root reached.
    sn == 0 && r == *root
}

/// Checks a consistency proof: that the tree of `old_size` leaves with root
/// `old_root` is a prefix of the tree of `new_size` leaves with root
/// `new_root` (RFC 9162 §2.1.4.2).
///
/// RFC 9162 defines the algorithm for `0 < old_size < new_size`; the edges
/// follow from the definition of the proof: the empty tree is a prefix of
/// every tree (the proof must be empty), and a tree is consistent with
/// itself only if the roots are equal (the proof must be empty).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    // 1. An empty proof cannot prove anything between different sizes.
    let Some((head, tail)) = proof.split_first() else {
        return false;
    };
    // 2. If the old tree is a perfect subtree of the new one, its root is
    //    the proof's implicit first element.
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*head, tail)
    };
    // 3.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4. Skip the levels where the old tree's last node is a right child
    //    inside the first element.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let (mut fr, mut sr) = (first, first);
    // 6.
    for c in rest {
        // a.
        if sn == 0 {
            return false;
        }
        // b.
        if fn_ & 1 == 1 || fn_ == sn {
            fr = hash_children(c, &fr);
            sr = hash_children(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = hash_children(&sr, c);
        }
        // c.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    fr == *old_root && sr == *new_root && sn == 0
}

/// A Merkle tree kept as its compact range: the roots of the perfect
/// subtrees that make up leaves `[0, size)`, largest (leftmost) first, one
/// per set bit of `size`.
///
/// This is what a gateway keeps in memory between group commits: at most
/// 64 hashes, whatever the size of the log. Appending merges equal-sized
/// subtrees like a binary counter carries; the root folds the subtrees from
/// the right, which is exactly RFC 9162's split at the largest power of two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a compact range from its size and subtree hashes (largest
    /// first), e.g. those stored beside the last checkpoint. The caller
    /// should compare [`root`](Self::root) with that checkpoint's signed
    /// root before trusting it.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if peaks.len() != expected {
            return Err(ProofError::WrongPeakCount {
                size,
                expected,
                found: peaks.len(),
            });
        }
        Ok(Self { size, peaks })
    }

    /// Builds the compact range of a list of leaf hashes.
    pub fn from_leaves(leaf_hashes: &[Hash]) -> Self {
        let mut range = Self::new();
        range.extend(leaf_hashes);
        range
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' hashes, largest (leftmost) first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        // Each trailing 1 bit of the size is a subtree as large as what we
        // carry: merge them, as a binary counter carries.
        let mut carries = self.size.trailing_ones();
        while carries > 0 {
            if let Some(left) = self.peaks.pop() {
                hash = hash_children(&left, &hash);
            }
            carries -= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// Appends leaf hashes in order.
    pub fn extend<'a>(&mut self, leaf_hashes: impl IntoIterator<Item = &'a Hash>) {
        for leaf in leaf_hashes {
            self.append(*leaf);
        }
    }

    /// The root of the tree of the current size.
    pub fn root(&self) -> Hash {
        let mut from_right = self.peaks.iter().rev();
        match from_right.next() {
            None => EMPTY_ROOT,
            Some(last) => from_right.fold(*last, |acc, peak| hash_children(peak, &acc)),
        }
    }

    /// The subtree hash over `[start, end)`, if it is one of the peaks.
    fn peak(&self, start: u64, end: u64) -> Option<Hash> {
        let mut peak_start = 0u64;
        let mut peaks = self.peaks.iter();
        for bit in (0..64).rev() {
            let width = 1u64 << bit;
            if self.size & width == 0 {
                continue;
            }
            let hash = peaks.next()?;
            if peak_start == start && peak_start + width == end {
                return Some(*hash);
            }
            peak_start += width;
        }
        None
    }
}

/// One group commit: the tree before it (as a compact range) and the leaf
/// hashes it appends. Gives the new root, each new entry's inclusion proof
/// against that root, and the consistency proof from the old size, without
/// the rest of the log.
///
/// Every node of the new tree that is not entirely before the batch is
/// hashed once, when the batch is built (O(batch + log n) hashing); proofs
/// are then look-ups. Every node the proofs need that lies entirely before
/// the batch is one of the old compact range's subtrees: an inclusion
/// proof's left siblings and a consistency proof's old-tree nodes are
/// exactly the perfect subtrees that the old size's binary digits describe.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    before: &'a CompactRange,
    leaves: &'a [Hash],
    /// Hashes of the new tree's nodes that reach into the batch, by range.
    nodes: HashMap<(u64, u64), Hash>,
    root: Hash,
}

impl<'a> Batch<'a> {
    /// Hashes the tree that `leaves` appended to `before` make.
    pub fn new(before: &'a CompactRange, leaves: &'a [Hash]) -> Self {
        let mut batch = Self {
            before,
            leaves,
            nodes: HashMap::with_capacity(2 * leaves.len()),
            root: before.root(),
        };
        if !leaves.is_empty() {
            batch.root = batch.hash_node(0, batch.new_size());
        }
        batch
    }

    /// The size before the batch.
    pub fn old_size(&self) -> u64 {
        self.before.size()
    }

    /// The size after the batch.
    pub fn new_size(&self) -> u64 {
        self.before.size() + self.leaves.len() as u64
    }

    /// The root after the batch: what the batch's checkpoint signs.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The compact range after the batch, to keep for the next one.
    pub fn after(&self) -> CompactRange {
        let mut range = self.before.clone();
        range.extend(self.leaves);
        range
    }

    /// The inclusion proof of leaf `index` (one of the batch's) against
    /// [`root`](Self::root) at [`new_size`](Self::new_size).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, ProofError> {
        let (start, size) = (self.old_size(), self.new_size());
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        if index < start {
            return Err(ProofError::BeforeBatch { index, start });
        }
        path(index, 0, size, self)
    }

    /// The consistency proof from the tree before the batch to the tree
    /// after it.
    pub fn consistency_proof(&self) -> Result<Vec<Hash>, ProofError> {
        let (old, new) = (self.old_size(), self.new_size());
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        subproof(old, 0, new, self)
    }

    /// Hashes node `[start, end)` of the new tree and every node below it
    /// that reaches into the batch, remembering each.
    fn hash_node(&mut self, start: u64, end: u64) -> Hash {
        let batch_start = self.old_size();
        if end <= batch_start {
            // Entirely before the batch: one of the old subtrees (see the
            // type's documentation); the fallback is never taken.
            let peak = self.before.peak(start, end);
            debug_assert!(peak.is_some(), "[{start}, {end}) is not an old subtree");
            return peak.unwrap_or(EMPTY_ROOT);
        }
        if end - start == 1 {
            return self.leaves[(start - batch_start) as usize];
        }
        let k = split(end - start);
        let left = self.hash_node(start, start + k);
        let right = self.hash_node(start + k, end);
        let hash = hash_children(&left, &right);
        self.nodes.insert((start, end), hash);
        hash
    }
}

impl NodeSource for Batch<'_> {
    fn node(&self, start: u64, end: u64) -> Result<Hash, ProofError> {
        let batch_start = self.old_size();
        if end <= batch_start {
            return self.before.peak(start, end).ok_or(ProofError::BeforeBatch {
                index: start,
                start: batch_start,
            });
        }
        if end - start == 1 {
            return Ok(self.leaves[(start - batch_start) as usize]);
        }
        self.nodes
            .get(&(start, end))
            .copied()
            .ok_or(ProofError::BeforeBatch {
                index: start,
                start: batch_start,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(hex_text: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut out).unwrap();
        out
    }

    /// The leaf inputs of the Certificate Transparency / Trillian test
    /// vectors (transparency-dev/merkle, `testonly/constants.go`).
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| hash_leaf(&hex::decode(x).unwrap()))
        .collect()
    }

    /// Roots of the trees of sizes 0..=8 over [`ct_leaves`].
    fn ct_roots() -> Vec<Hash> {
        [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        .iter()
        .map(|x| h(x))
        .collect()
    }

    /// Inclusion proofs from transparency-dev/merkle `proof/verify_test.go`:
    /// (leaf index, tree size, proof). The Go file counts leaves from 1.
    fn ct_inclusion_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                5,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                3,
                vec![h(
                    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                )],
            ),
            (
                1,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ]
    }

    /// Consistency proofs from the same file: (old size, new size, proof).
    fn ct_consistency_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    /// The compact ranges of sizes 0..=8 over [`ct_leaves`]
    /// (`CompactTrees()` in the same constants file).
    fn ct_compact_ranges() -> Vec<Vec<Hash>> {
        let n0 = |i: usize| ct_leaves()[i];
        let n1 = [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ]
        .map(h);
        let n2 = h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7");
        let n3 = h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
        vec![
            vec![],
            vec![n0(0)],
            vec![n1[0]],
            vec![n1[0], n0(2)],
            vec![n2],
            vec![n2, n0(4)],
            vec![n2, n1[2]],
            vec![n2, n1[2], n0(6)],
            vec![n3],
        ]
    }

    #[test]
    fn empty_root_is_the_hash_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root(&[]), EMPTY_ROOT);
        assert_eq!(CompactRange::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn leaf_hashes_match_the_ct_node_hashes() {
        // The first level of `NodeHashes()`.
        assert_eq!(
            ct_leaves()[0],
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            ct_leaves()[7],
            h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")
        );
    }

    #[test]
    fn roots_of_sizes_0_to_8_match_the_ct_vectors() {
        let leaves = ct_leaves();
        let roots = ct_roots();
        let compact = ct_compact_ranges();
        let mut range = CompactRange::new();
        for size in 0..=8usize {
            assert_eq!(root(&leaves[..size]), roots[size], "MTH of size {size}");
            assert_eq!(range.root(), roots[size], "compact range of size {size}");
            assert_eq!(range.peaks(), &compact[size][..], "peaks of size {size}");
            if size < 8 {
                range.append(leaves[size]);
            }
        }
    }

    #[test]
    fn inclusion_proofs_match_the_ct_vectors_and_verify() {
        let leaves = ct_leaves();
        let roots = ct_roots();
        for (index, size, proof) in ct_inclusion_proofs() {
            assert_eq!(inclusion_proof(&leaves, index, size).unwrap(), proof);
            let leaf = leaves[index as usize];
            let root = roots[size as usize];
            assert!(verify_inclusion(&leaf, index, size, &proof, &root));
            for (desc, ok) in corrupted_inclusion(&leaf, index, size, &proof, &root) {
                assert!(!ok, "{index}/{size}: {desc} verified");
            }
        }
    }

    /// The probes of transparency-dev's `corruptInclusionProof`.
    fn corrupted_inclusion(
        leaf: &Hash,
        index: u64,
        size: u64,
        proof: &[Hash],
        root: &Hash,
    ) -> Vec<(String, bool)> {
        let some = [0xab; 32];
        let v = |i: u64, s: u64, l: &Hash, p: &[Hash], r: &Hash| verify_inclusion(l, i, s, p, r);
        let mut probes = vec![
            (
                "index - 1".into(),
                v(index.wrapping_sub(1), size, leaf, proof, root),
            ),
            ("index + 1".into(), v(index + 1, size, leaf, proof, root)),
            ("index ^ 2".into(), v(index ^ 2, size, leaf, proof, root)),
            ("size * 2".into(), v(index, size * 2, leaf, proof, root)),
            ("size / 2".into(), v(index, size / 2, leaf, proof, root)),
            ("wrong leaf".into(), v(index, size, &some, proof, root)),
            (
                "empty root".into(),
                v(index, size, leaf, proof, &EMPTY_ROOT),
            ),
            ("random root".into(), v(index, size, leaf, proof, &some)),
            (
                "trailing root".into(),
                v(index, size, leaf, &[proof, &[*root]].concat(), root),
            ),
            (
                "preceding root".into(),
                v(index, size, leaf, &[&[*root], proof].concat(), root),
            ),
        ];
        for i in 0..proof.len() {
            let mut wrong = proof.to_vec();
            wrong[i][0] ^= 8;
            probes.push((
                format!("flipped proof[{i}]"),
                v(index, size, leaf, &wrong, root),
            ));
        }
        if let Some((_, shorter)) = proof.split_last() {
            probes.push((
                "removed component".into(),
                v(index, size, leaf, shorter, root),
            ));
        }
        if proof.len() > 1 {
            let inserted = [&proof[..1], &[some], &proof[1..]].concat();
            probes.push((
                "inserted component".into(),
                v(index, size, leaf, &inserted, root),
            ));
        }
        probes
    }

    #[test]
    fn consistency_proofs_match_the_ct_vectors_and_verify() {
        let leaves = ct_leaves();
        let roots = ct_roots();
        for (old, new, proof) in ct_consistency_proofs() {
            assert_eq!(consistency_proof(&leaves, old, new).unwrap(), proof);
            let (r1, r2) = (roots[old as usize], roots[new as usize]);
            assert!(verify_consistency(old, new, &r1, &r2, &proof));
            if proof.is_empty() {
                continue;
            }
            for (desc, ok) in corrupted_consistency(old, new, &r1, &r2, &proof) {
                assert!(!ok, "{old}->{new}: {desc} verified");
            }
        }
    }

    /// The probes of transparency-dev's `corruptConsistencyProof`.
    fn corrupted_consistency(
        old: u64,
        new: u64,
        r1: &Hash,
        r2: &Hash,
        proof: &[Hash],
    ) -> Vec<(String, bool)> {
        let wrong_root = [0x77; 32];
        let v = verify_consistency;
        let mut probes = vec![
            ("old - 1".into(), v(old - 1, new, r1, r2, proof)),
            ("old + 1".into(), v(old + 1, new, r1, r2, proof)),
            ("old ^ 2".into(), v(old ^ 2, new, r1, r2, proof)),
            ("new * 2".into(), v(old, new * 2, r1, r2, proof)),
            ("new / 2".into(), v(old, new / 2, r1, r2, proof)),
            ("wrong old root".into(), v(old, new, &wrong_root, r2, proof)),
            ("wrong new root".into(), v(old, new, r1, &wrong_root, proof)),
            ("swapped roots".into(), v(old, new, r2, r1, proof)),
            ("empty proof".into(), v(old, new, r1, r2, &[])),
            (
                "trailing old root".into(),
                v(old, new, r1, r2, &[proof, &[*r1]].concat()),
            ),
            (
                "trailing new root".into(),
                v(old, new, r1, r2, &[proof, &[*r2]].concat()),
            ),
            (
                "preceding old root".into(),
                v(old, new, r1, r2, &[&[*r1], proof].concat()),
            ),
            (
                "preceding new root".into(),
                v(old, new, r1, r2, &[&[*r2], proof].concat()),
            ),
            (
                "preceding proof[0]".into(),
                v(old, new, r1, r2, &[&[proof[0]], proof].concat()),
            ),
        ];
        if let Some((_, shorter)) = proof.split_last() {
            probes.push(("truncated proof".into(), v(old, new, r1, r2, shorter)));
        }
        for i in 0..proof.len() {
            let mut wrong = proof.to_vec();
            wrong[i][0] ^= 16;
            probes.push((format!("flipped proof[{i}]"), v(old, new, r1, r2, &wrong)));
        }
        probes
    }

    #[test]
    fn consistency_edge_cases_follow_the_definition() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        // Sizes that are always consistent.
        assert!(verify_consistency(0, 0, &a, &a, &[]));
        assert!(verify_consistency(0, 1, &a, &b, &[]));
        assert!(verify_consistency(1, 1, &b, &b, &[]));
        // Same size, different roots.
        assert!(!verify_consistency(0, 0, &a, &b, &[]));
        assert!(!verify_consistency(1, 1, &a, &b, &[]));
        // Back in time.
        assert!(!verify_consistency(1, 0, &a, &b, &[]));
        assert!(!verify_consistency(2, 1, &a, &b, &[]));
        // An empty proof between different sizes.
        assert!(!verify_consistency(1, 2, &a, &b, &[]));
        // Equal roots, but a proof where none is due.
        assert!(!verify_consistency(
            0,
            0,
            &EMPTY_ROOT,
            &EMPTY_ROOT,
            &[EMPTY_ROOT]
        ));
        assert!(!verify_consistency(
            0,
            1,
            &EMPTY_ROOT,
            &EMPTY_ROOT,
            &[EMPTY_ROOT]
        ));
        assert!(!verify_consistency(
            1,
            1,
            &EMPTY_ROOT,
            &EMPTY_ROOT,
            &[EMPTY_ROOT]
        ));
    }

    #[test]
    fn inclusion_edge_cases() {
        let leaf = hash_leaf(b"data");
        // A one-leaf tree: the root is the leaf and the proof is empty.
        assert!(verify_inclusion(&leaf, 0, 1, &[], &leaf));
        assert!(!verify_inclusion(&leaf, 0, 1, &[], &EMPTY_ROOT));
        for (index, size) in [(0, 0), (1, 0), (2, 1), (1, 1)] {
            assert!(!verify_inclusion(&leaf, index, size, &[], &leaf));
        }
        assert_eq!(
            inclusion_proof(&[leaf], 1, 1),
            Err(ProofError::IndexOutOfRange { index: 1, size: 1 })
        );
        assert_eq!(
            inclusion_proof(&[leaf], 0, 2),
            Err(ProofError::NotEnoughLeaves {
                size: 2,
                available: 1
            })
        );
        assert_eq!(
            consistency_proof(&[leaf, leaf], 2, 1),
            Err(ProofError::SizesReversed {
                old_size: 2,
                new_size: 1
            })
        );
    }

    fn distinct_leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| hash_leaf(&i.to_be_bytes())).collect()
    }

    #[test]
    fn compact_range_agrees_with_the_tree_hash_up_to_300() {
        let leaves = distinct_leaves(300);
        let mut range = CompactRange::new();
        for (i, leaf) in leaves.iter().enumerate() {
            range.append(*leaf);
            assert_eq!(range.size(), i as u64 + 1);
            assert_eq!(range.peaks().len(), range.size().count_ones() as usize);
            assert_eq!(range.root(), root(&leaves[..=i]), "size {}", i + 1);
        }
        let restored = CompactRange::from_peaks(range.size(), range.peaks().to_vec()).unwrap();
        assert_eq!(restored, range);
        assert_eq!(
            CompactRange::from_peaks(3, vec![[0; 32]]),
            Err(ProofError::WrongPeakCount {
                size: 3,
                expected: 2,
                found: 1
            })
        );
    }

    #[test]
    fn consistency_for_every_pair_of_sizes_up_to_40() {
        let leaves = distinct_leaves(40);
        let roots: Vec<Hash> = (0..=40).map(|n| root(&leaves[..n])).collect();
        for new in 0..=40u64 {
            for old in 0..=new {
                let proof = consistency_proof(&leaves, old, new).unwrap();
                let (r1, r2) = (roots[old as usize], roots[new as usize]);
                assert!(
                    verify_consistency(old, new, &r1, &r2, &proof),
                    "{old}->{new}"
                );
                if old == 0 || old == new {
                    assert!(proof.is_empty());
                    continue;
                }
                // Any changed element, any missing element, a wrong root.
                for i in 0..proof.len() {
                    let mut wrong = proof.clone();
                    wrong[i][31] ^= 1;
                    assert!(
                        !verify_consistency(old, new, &r1, &r2, &wrong),
                        "{old}->{new} [{i}]"
                    );
                    let mut shorter = proof.clone();
                    shorter.remove(i);
                    assert!(!verify_consistency(old, new, &r1, &r2, &shorter));
                }
                assert!(!verify_consistency(
                    old,
                    new,
                    &roots[old as usize - 1],
                    &r2,
                    &proof
                ));
                assert!(!verify_consistency(
                    old,
                    new,
                    &r1,
                    &roots[new as usize - 1],
                    &proof
                ));
                // A history that differs from the old tree in any one leaf.
                for changed in 0..old as usize {
                    let mut forked = leaves.clone();
                    forked[changed] = hash_leaf(b"forked");
                    let fr = root(&forked[..old as usize]);
                    assert!(!verify_consistency(old, new, &fr, &r2, &proof));
                }
            }
        }
    }

    #[test]
    fn batches_give_the_same_proofs_as_the_whole_log() {
        let leaves = distinct_leaves(90);
        for old in 0..45usize {
            let before = CompactRange::from_leaves(&leaves[..old]);
            for len in [0usize, 1, 2, 3, 7, 8, 13, 45] {
                let new = old + len;
                let batch = Batch::new(&before, &leaves[old..new]);
                assert_eq!(batch.old_size(), old as u64);
                assert_eq!(batch.new_size(), new as u64);
                assert_eq!(batch.root(), root(&leaves[..new]), "{old}+{len}");
                assert_eq!(batch.after(), CompactRange::from_leaves(&leaves[..new]));
                for index in old..new {
                    let proof = batch.inclusion_proof(index as u64).unwrap();
                    assert_eq!(
                        proof,
                        inclusion_proof(&leaves, index as u64, new as u64).unwrap()
                    );
                    assert!(verify_inclusion(
                        &leaves[index],
                        index as u64,
                        new as u64,
                        &proof,
                        &batch.root()
                    ));
                }
                assert_eq!(
                    batch.consistency_proof().unwrap(),
                    consistency_proof(&leaves, old as u64, new as u64).unwrap()
                );
                if old > 0 {
                    assert_eq!(
                        batch.inclusion_proof(old as u64 - 1),
                        Err(ProofError::BeforeBatch {
                            index: old as u64 - 1,
                            start: old as u64
                        })
                    );
                }
                assert_eq!(
                    batch.inclusion_proof(new as u64),
                    Err(ProofError::IndexOutOfRange {
                        index: new as u64,
                        size: new as u64
                    })
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_inclusion_proof_verifies_and_no_tampered_one_does(
            size in 1u64..200,
            seed in any::<u64>(),
            flip in any::<(usize, u8)>(),
        ) {
            let leaves: Vec<Hash> = (0..size)
                .map(|i| hash_leaf(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
                .collect();
            let tree_root = root(&leaves);
            for index in 0..size {
                let proof = inclusion_proof(&leaves, index, size).unwrap();
                let leaf = leaves[index as usize];
                prop_assert!(verify_inclusion(&leaf, index, size, &proof, &tree_root));
                // Another position for the same leaf.
                let other = (index + 1 + u64::from(flip.1) % size.max(2)) % size;
                if other != index {
                    prop_assert!(!verify_inclusion(&leaf, other, size, &proof, &tree_root));
                }
                // Another leaf at this position.
                let another = leaves[((index + 1) % size) as usize];
                if size > 1 {
                    prop_assert!(!verify_inclusion(&another, index, size, &proof, &tree_root));
                }
                if !proof.is_empty() {
                    // Any bit of any element.
                    let mut wrong = proof.clone();
                    let i = flip.0 % wrong.len();
                    wrong[i][(flip.0 / 7) % 32] ^= 1 << (flip.1 % 8);
                    prop_assert!(!verify_inclusion(&leaf, index, size, &wrong, &tree_root));
                    // One element fewer or one more.
                    prop_assert!(!verify_inclusion(&leaf, index, size, &proof[1..], &tree_root));
                    let longer = [proof.as_slice(), &[tree_root]].concat();
                    prop_assert!(!verify_inclusion(&leaf, index, size, &longer, &tree_root));
                }
            }
        }

        #[test]
        fn every_wrong_index_fails(size in 2u64..64, index in any::<u64>()) {
            let leaves = distinct_leaves(size);
            let tree_root = root(&leaves);
            let index = index % size;
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            for other in 0..size + 2 {
                let ok = verify_inclusion(&leaves[index as usize], other, size, &proof, &tree_root);
                prop_assert_eq!(ok, other == index, "claimed index {} for leaf {}", other, index);
            }
        }

        #[test]
        fn consistency_verifies_between_random_sizes_and_fails_when_tampered(
            new in 1u64..400,
            old in any::<u64>(),
            flip in any::<(usize, u8)>(),
        ) {
            let leaves = distinct_leaves(new);
            let old = 1 + old % new;
            let proof = consistency_proof(&leaves, old, new).unwrap();
            let (r1, r2) = (root(&leaves[..old as usize]), root(&leaves));
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof));
            if !proof.is_empty() {
                let mut wrong = proof.clone();
                let i = flip.0 % wrong.len();
                wrong[i][(flip.0 / 5) % 32] ^= 1 << (flip.1 % 8);
                prop_assert!(!verify_consistency(old, new, &r1, &r2, &wrong));
            }
            // The registry's check: a batch's proof from the last anchor.
            let before = CompactRange::from_leaves(&leaves[..old as usize]);
            let batch = Batch::new(&before, &leaves[old as usize..]);
            prop_assert_eq!(batch.consistency_proof().unwrap(), proof);
        }
    }
}
