//! Ed25519 for agenttrail: signing (RFC 8032 section 5.1.6, pure Ed25519), and verification of
//! one signature or a whole batch at once.
//!
//! Signing is deterministic, so a signature made here is byte for byte the one OpenSSL or libsodium
//! makes with the same seed and message. A `Signer` keeps the expanded secret key (the clamped
//! scalar and the nonce prefix) and zeroizes it when freed.
//!
//! The rule (RFC 8032 section 5.1.7 with libsodium's strictness):
//! - the public key A decodes from a canonical encoding, is not of small order and is torsion-free
//!   (checked once per key, in `agenttrail_ed25519_key_new`);
//! - S is canonical (S < L); R decodes from a canonical encoding and is not of small order;
//! - the cofactored group equation holds: [8][S]B = [8]R + [8][k]A, k = SHA-512(R || A || M).
//!
//! RFC 8032 names the cofactored equation as *the* check (the cofactorless [S]B = R + [k]A is
//! "sufficient, but not required"). It is the one rule a batch can check exactly as one signature
//! is checked, so a batch and one-by-one verification always agree. With a key of prime order,
//! every signature libsodium accepts is accepted here; the only ones accepted here and refused by a
//! cofactorless verifier have an R with a small-order component, which only the holder of the
//! private key can make. (libsodium lets a key with a small-order component through, and with it
//! some signatures crafted by its holder; such a key is refused here, and by the registry.)
//!
//! C ABI, loaded with ctypes by `agenttrail/native/ed25519.py`; no Python headers are needed.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use zeroize::{Zeroize, Zeroizing};

/// The ABI version the Python loader checks, bumped on any change of the C ABI below
/// (2: signing added).
pub const ABI_VERSION: u32 = 2;

/// A public key that passed the key checks, decoded once.
pub struct Key {
    bytes: [u8; 32],
    point: EdwardsPoint,
    neg: EdwardsPoint,
}

/// The low 255 bits, little-endian, are y; its encoding is canonical iff y < p = 2^255 - 19.
fn canonical_y(b: &[u8; 32]) -> bool {
    !(b[31] & 0x7f == 0x7f && b[1..31].iter().all(|&v| v == 0xff) && b[0] >= 0xed)
}

/// A point from a canonical encoding. (y = +-1 are the only points with x = 0, where a set sign bit
/// would be a second encoding; both are of small order, which every caller refuses.)
fn decode_point(b: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical_y(b) {
        return None;
    }
    CompressedEdwardsY(*b).decompress()
}

impl Key {
    pub fn new(bytes: [u8; 32]) -> Option<Key> {
        let point = decode_point(&bytes)?;
        if point.is_small_order() || !point.is_torsion_free() {
            return None;
        }
        Some(Key { bytes, point, neg: -point })
    }
}

fn hram(r: &[u8], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// (R, S) of a signature when both are well-formed.
fn split(sig: &[u8; 64]) -> Option<(EdwardsPoint, Scalar)> {
    let r_bytes: [u8; 32] = sig[..32].try_into().ok()?;
    let s_bytes: [u8; 32] = sig[32..].try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = decode_point(&r_bytes)?;
    if r.is_small_order() {
        return None;
    }
    Some((r, s))
}

/// One signature.
pub fn verify_one(key: &Key, msg: &[u8], sig: &[u8; 64]) -> bool {
    let Some((r, s)) = split(sig) else { return false };
    let k = hram(&sig[..32], &key.bytes, msg);
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &key.neg, &s);
    (expected - r).mul_by_cofactor().is_identity()
}

/// Many signatures at once: true iff every one is valid (false positives with probability at
/// most 2^-128 over the random 128-bit weights z_i, which the signers cannot know in advance):
/// [8]( sum z_i R_i + sum (z_i k_i) A_i - (sum z_i S_i) B ) = 0. Signatures by the same key share
/// one term of the sum, so a batch costs about one multiplication per signature plus one per key.
pub fn verify_batch(items: &[(&Key, &[u8], &[u8; 64])]) -> Option<bool> {
    let mut weights = vec![0u8; 16 * items.len()];
    OsRng.try_fill_bytes(&mut weights).ok()?;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(items.len() + 9);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(items.len() + 9);
    let mut key_terms: Vec<(*const Key, Scalar)> = Vec::new();
    let mut key_index: HashMap<*const Key, usize> = HashMap::new();
    let mut b_coefficient = Scalar::ZERO;
    for (i, (key, msg, sig)) in items.iter().enumerate() {
        let Some((r, s)) = split(sig) else { return Some(false) };
        let k = hram(&sig[..32], &key.bytes, msg);
        let z = Scalar::from(u128::from_le_bytes(weights[16 * i..16 * i + 16].try_into().unwrap()));
        b_coefficient += z * s;
        scalars.push(z);
        points.push(r);
        let ptr: *const Key = *key;
        match key_index.get(&ptr) {
            Some(&at) => key_terms[at].1 += z * k,
            None => {
                key_index.insert(ptr, key_terms.len());
                key_terms.push((ptr, z * k));
            }
        }
    }
    for (ptr, c) in key_terms {
        scalars.push(c);
        // SAFETY: every pointer came from a live `&Key` in `items`, which outlives this call.
        points.push(unsafe { (*ptr).point });
    }
    scalars.push(-b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    Some(EdwardsPoint::vartime_multiscalar_mul(scalars, points).mul_by_cofactor().is_identity())
}

// -- signing -----------------------------------------------------------------------------------

/// An expanded secret key (RFC 8032 section 5.1.5): the clamped scalar s, the prefix from which each
/// signature's nonce is derived, and the public key A = [s]B. The secret parts are zeroized on drop
/// (best effort: copies the compiler leaves in registers or on the stack are not reached).
pub struct Signer {
    scalar: Scalar,
    prefix: [u8; 32],
    public: [u8; 32],
}

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        let h: Zeroizing<[u8; 64]> = Zeroizing::new(Sha512::digest(seed).into());
        let mut lower = Zeroizing::new([0u8; 32]);
        lower.copy_from_slice(&h[..32]);
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&h[32..]);
        // s is the clamped integer; reduced mod L it gives the same [s]B and the same S below.
        let scalar = Scalar::from_bytes_mod_order(clamp_integer(*lower));
        let public = EdwardsPoint::mul_base(&scalar).compress().to_bytes();
        Signer { scalar, prefix, public }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// R || S with r = SHA-512(prefix || M), R = [r]B, S = r + SHA-512(R || A || M) s (mod L).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(self.prefix);
        h.update(msg);
        let wide: Zeroizing<[u8; 64]> = Zeroizing::new(h.finalize().into());
        let mut r = Scalar::from_bytes_mod_order_wide(&wide);
        let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
        let k = hram(&big_r, &self.public, msg);
        let s = k * self.scalar + r;
        r.zeroize();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.scalar.zeroize();
        self.prefix.zeroize();
    }
}

// -- C ABI -------------------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn agenttrail_ed25519_abi() -> u32 {
    ABI_VERSION
}

/// A checked, decoded key, or null when the 32 bytes are not an acceptable public key.
///
/// # Safety
/// `pk` must point to 32 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_key_new(pk: *const u8) -> *mut Key {
    let bytes: [u8; 32] = std::slice::from_raw_parts(pk, 32).try_into().unwrap();
    match Key::new(bytes) {
        Some(key) => Box::into_raw(Box::new(key)),
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// `key` must come from `agenttrail_ed25519_key_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_key_free(key: *mut Key) {
    if !key.is_null() {
        drop(Box::from_raw(key));
    }
}

/// 1 valid, 0 not.
///
/// # Safety
/// `key` from `agenttrail_ed25519_key_new`; `msg` holds `len` bytes; `sig` holds 64 bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_verify(key: *const Key, msg: *const u8, len: usize,
                                                   sig: *const u8) -> i32 {
    let msg = if len == 0 { &[][..] } else { std::slice::from_raw_parts(msg, len) };
    let sig: &[u8; 64] = &*(sig as *const [u8; 64]);
    verify_one(&*key, msg, sig) as i32
}

/// 1 when all `n` signatures are valid, 0 when at least one is not, -1 when no randomness could be
/// had. Message i is `msgs[ends[i-1]..ends[i]]` (from 0 for the first); signature i is
/// `sigs[64*i..64*i+64]`.
///
/// # Safety
/// `keys` holds `n` keys from `agenttrail_ed25519_key_new`; `ends` holds `n` non-decreasing
/// offsets into `msgs`, the last one its length; `sigs` holds `64 * n` bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_verify_batch(n: usize, keys: *const *const Key,
                                                         msgs: *const u8, ends: *const usize,
                                                         sigs: *const u8) -> i32 {
    if n == 0 {
        return 1;
    }
    let keys = std::slice::from_raw_parts(keys, n);
    let ends = std::slice::from_raw_parts(ends, n);
    let total = ends[n - 1];
    let msgs = if total == 0 { &[][..] } else { std::slice::from_raw_parts(msgs, total) };
    let sigs = std::slice::from_raw_parts(sigs, 64 * n);
    let mut items = Vec::with_capacity(n);
    let mut start = 0usize;
    for i in 0..n {
        let end = ends[i];
        if end < start || end > total {
            return 0;
        }
        let sig: &[u8; 64] = sigs[64 * i..64 * i + 64].try_into().unwrap();
        items.push((&*keys[i], &msgs[start..end], sig));
        start = end;
    }
    match verify_batch(&items) {
        Some(ok) => ok as i32,
        None => -1,
    }
}

/// The signer of a 32-byte seed (RFC 8032's private key).
///
/// # Safety
/// `seed` must point to 32 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_signer_new(seed: *const u8) -> *mut Signer {
    let seed: &[u8; 32] = &*(seed as *const [u8; 32]);
    Box::into_raw(Box::new(Signer::from_seed(seed)))
}

/// Zeroizes the secret parts and frees.
///
/// # Safety
/// `signer` must come from `agenttrail_ed25519_signer_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_signer_free(signer: *mut Signer) {
    if !signer.is_null() {
        drop(Box::from_raw(signer));
    }
}

/// Writes the 32-byte public key to `out`.
///
/// # Safety
/// `signer` from `agenttrail_ed25519_signer_new`; `out` holds 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_signer_public(signer: *const Signer, out: *mut u8) {
    (*(out as *mut [u8; 32])) = (*signer).public_key();
}

/// Writes the 64-byte signature of `msg` to `out`.
///
/// # Safety
/// `signer` from `agenttrail_ed25519_signer_new`; `msg` holds `len` bytes; `out` holds 64 writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn agenttrail_ed25519_sign(signer: *const Signer, msg: *const u8, len: usize,
                                                 out: *mut u8) {
    let msg = if len == 0 { &[][..] } else { std::slice::from_raw_parts(msg, len) };
    (*(out as *mut [u8; 64])) = (*signer).sign(msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn signed(n: usize) -> (Vec<Key>, Vec<Vec<u8>>, Vec<[u8; 64]>) {
        let sks: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate(&mut OsRng)).collect();
        let keys = (0..n).map(|i| Key::new(sks[i % 3].verifying_key().to_bytes()).unwrap()).collect();
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| format!("event {i}").into_bytes()).collect();
        let sigs = (0..n).map(|i| sks[i % 3].sign(&msgs[i]).to_bytes()).collect();
        (keys, msgs, sigs)
    }

    #[test]
    fn batch_agrees_with_one_by_one() {
        let (keys, msgs, mut sigs) = signed(40);
        let items = |s: &Vec<[u8; 64]>| -> bool {
            let v: Vec<_> = (0..40).map(|i| (&keys[i], msgs[i].as_slice(), &s[i])).collect();
            verify_batch(&v).unwrap()
        };
        assert!((0..40).all(|i| verify_one(&keys[i], &msgs[i], &sigs[i])));
        assert!(items(&sigs));
        sigs[17][5] ^= 1;
        assert!(!verify_one(&keys[17], &msgs[17], &sigs[17]));
        assert!(!items(&sigs));
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        for t in EIGHT_TORSION.iter() {
            assert!(Key::new(t.compress().to_bytes()).is_none());
        }
        let mut p = [0xffu8; 32];
        p[0] = 0xee;
        p[31] = 0x7f; // y = p + 1: a non-canonical encoding of y = 1
        assert!(Key::new(p).is_none());
    }

    #[test]
    fn mixed_order_r_passes_the_cofactored_rule_in_both_paths() {
        // R = rB + T (T of order 8), S = r + k a: fails [S]B = R + [k]A, holds after [8].
        let a = Scalar::from(1234567u64);
        let key = Key::new((a * ED25519_BASEPOINT_POINT).compress().to_bytes()).unwrap();
        let r = Scalar::from(7654321u64);
        let big_r = (r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress().to_bytes();
        let k = hram(&big_r, &key.bytes, b"m");
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        assert!(verify_one(&key, b"m", &sig));
        assert!(verify_batch(&[(&key, b"m".as_slice(), &sig)]).unwrap());
    }

    #[test]
    fn signing_matches_ed25519_dalek() {
        let mut seed = [0u8; 32];
        let mut msg = vec![0u8; 1100];
        for n in (0..1100).step_by(7).chain([64, 111, 112, 127, 128, 129, 1024]) {
            OsRng.fill_bytes(&mut seed);
            OsRng.fill_bytes(&mut msg[..n]);
            let ours = Signer::from_seed(&seed);
            let theirs = SigningKey::from_bytes(&seed);
            assert_eq!(ours.public_key(), theirs.verifying_key().to_bytes());
            let sig = ours.sign(&msg[..n]);
            assert_eq!(sig, theirs.sign(&msg[..n]).to_bytes(), "seed {seed:?}, {n} bytes");
            assert!(verify_one(&Key::new(ours.public_key()).unwrap(), &msg[..n], &sig));
        }
    }

    #[test]
    fn signing_through_the_c_abi() {
        // RFC 8032 section 7.1, TEST 2 (one-byte message 0x72)
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
        let seed = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let expected = hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                            085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
        let (mut public, mut sig) = ([0u8; 32], [0u8; 64]);
        unsafe {
            let signer = agenttrail_ed25519_signer_new(seed.as_ptr());
            agenttrail_ed25519_signer_public(signer, public.as_mut_ptr());
            agenttrail_ed25519_sign(signer, [0x72u8].as_ptr(), 1, sig.as_mut_ptr());
            agenttrail_ed25519_signer_free(signer);
        }
        assert_eq!(public.to_vec(), hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"));
        assert_eq!(sig.to_vec(), expected);
    }
}
