/// The counter-based random generator of the random methods (DARE, DELLA).
///
/// Each (seed, output tensor, input) has its own 64-bit stream key; element `i` of a stream
/// draws from `mix(key + i·φ)`, so any block of any tensor can be drawn on any thread in any
/// order, and the same recipe and seed give the same masks on every machine.
public enum RandomStream {
  /// The stream of input `input` of tensor `tensor`: a 64-bit key from the seed, the tensor's
  /// name (FNV-1a) and the input's position, mixed by SplitMix64's finalizer.
  public static func key(_ seed: UInt64, _ tensor: String, _ input: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in tensor.utf8 {
      h ^= UInt64(byte)
      h = h &* 0x0000_0100_0000_01b3
    }
    return mix(mix(seed ^ 0x6d65_7267_6521) ^ mix(h) ^ mix(UInt64(input) &+ 0x9E37_79B9_7F4A_7C15))
  }

  /// SplitMix64's finalizer.
  @inlinable
  public static func mix(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
