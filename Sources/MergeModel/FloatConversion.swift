/// Conversions between storage formats and `Float`.
///
/// Widening (bf16, f16, f8 → f32) is exact. Narrowing (f32 → bf16, f16) rounds to nearest,
/// ties to even, once; overflow gives ±∞; NaN stays NaN (quieted, sign kept) — a signalling
/// NaN such as `0x7F800001` would otherwise round to ∞. The functions are plain integer
/// arithmetic so that they compile on any x86_64 or arm64 without F16C.
public enum FloatConversion {
  /// bf16 bits → f32 (exact).
  @inlinable @inline(__always)
  public static func float(fromBFloat16 bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
  }

  /// f32 → bf16 bits, round to nearest even; NaN stays a quiet NaN.
  @inlinable @inline(__always)
  public static func bfloat16(from value: Float) -> UInt16 {
    let bits = value.bitPattern
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
      return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
    }
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
  }

  /// f16 bits → f32 (exact, subnormals included).
  @inlinable @inline(__always)
  public static func float(fromFloat16 bits: UInt16) -> Float {
    let h = UInt32(bits)
    let sign = (h & 0x8000) << 16
    let exponent = (h >> 10) & 0x1F
    let mantissa = h & 0x3FF
    if exponent == 0x1F {
      return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
      // Zero or subnormal: mantissa · 2⁻²⁴, exact in f32.
      let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)
      return Float(bitPattern: sign | magnitude.bitPattern)
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
  }

  /// f32 → f16 bits, round to nearest even; overflow gives ±∞; NaN stays a quiet NaN.
  ///
  /// Fabian Giesen's `float_to_half_fast3_rtne`: normal results round by an integer bias,
  /// subnormal results by one f32 addition of a magic constant.
  @inlinable @inline(__always)
  public static func float16(from value: Float) -> UInt16 {
    var u = value.bitPattern
    let sign = u & 0x8000_0000
    u ^= sign
    var o: UInt32
    if u >= 0x4780_0000 {  // ≥ 2¹⁶: ∞, or NaN
      o = u > 0x7F80_0000 ? (0x7E00 | ((u >> 13) & 0x3FF)) : 0x7C00
    } else if u < 0x3880_0000 {  // < 2⁻¹⁴: subnormal or zero
      let f = Float(bitPattern: u) + Float(bitPattern: 0x3F00_0000)
      o = f.bitPattern &- 0x3F00_0000
    } else {
      let odd = (u >> 13) & 1
      u = u &+ 0xC800_0FFF &+ odd
      o = u >> 13
    }
    return UInt16(truncatingIfNeeded: o | (sign >> 16))
  }

  /// f8 E4M3 (torch's `float8_e4m3fn`: bias 7, no infinities, `S.1111.111` is NaN) → f32.
  public static let float8E4M3Table: [Float] = (0..<256).map { i in
    let sign: Float = i & 0x80 != 0 ? -1 : 1
    let exponent = (i >> 3) & 0xF
    let mantissa = i & 0x7
    if exponent == 0xF && mantissa == 0x7 { return .nan }
    if exponent == 0 {
      return sign * Float(mantissa) / 8 * Float(sign: .plus, exponent: -6, significand: 1)
    }
    return sign * (1 + Float(mantissa) / 8)
      * Float(sign: .plus, exponent: exponent - 7, significand: 1)
  }

  /// f8 E5M2 (bias 15, IEEE-style infinities and NaN) → f32.
  public static let float8E5M2Table: [Float] = (0..<256).map { i in
    float(fromFloat16: UInt16(i) << 8)
  }
}
