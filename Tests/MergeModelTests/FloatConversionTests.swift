import Testing
import _TestSupport

@testable import MergeModel

/// Slow references: round a Double to the nearest value with `mantissaBits` fraction bits and
/// exponent range of the target format, ties to even, by exact arithmetic on Doubles.
func referenceRound(_ x: Double, mantissaBits: Int, minExponent: Int, maxExponent: Int) -> Double {
  if x.isNaN || x.isInfinite || x == 0 { return x }
  let sign: Double = x < 0 ? -1 : 1
  let a = abs(x)
  var e = Int(a.exponent)
  if e < minExponent { e = minExponent }  // subnormal: fixed quantum
  let quantum = Double(sign: .plus, exponent: e - mantissaBits, significand: 1)
  let q = a / quantum
  var r = q.rounded(.down)
  let frac = q - r
  if frac > 0.5 || (frac == 0.5 && r.truncatingRemainder(dividingBy: 2) != 0) { r += 1 }
  let result = r * quantum
  let largest = Double(
    sign: .plus, exponent: maxExponent,
    significand: 2 - Double(sign: .plus, exponent: -mantissaBits, significand: 1))
  if result > largest { return sign * .infinity }
  return sign * result
}

@Suite struct FloatConversionTests {
  static let specials: [Float] = [
    0, -0, 1, -1, .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001),
    Float(bitPattern: 0xFFC0_0000),
    .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNormalMagnitude,
    .leastNonzeroMagnitude, 65504, 65519.99, 65520, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08,
    3.0e-08, 1.0009766, 1.00048828125, 0.1, 3.14159265,
  ]

  @Test("bf16 widening is exact and narrowing rounds to nearest even, NaN kept")
  func bfloat16() {
    var rng = SplitMix64(state: 7)
    var values = Self.specials
    for _ in 0..<200_000 {
      values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())))
    }
    for x in values {
      let bits = FloatConversion.bfloat16(from: x)
      let back = FloatConversion.float(fromBFloat16: bits)
      if x.isNaN {
        #expect(back.isNaN, "NaN \(x.bitPattern) became \(back)")
        #expect(back.sign == x.sign)
        continue
      }
      let expected = referenceRound(Double(x), mantissaBits: 7, minExponent: -126, maxExponent: 127)
      #expect(
        Double(back) == expected || (back == 0 && expected == 0),
        "\(x) → \(back), expected \(expected)")
    }
  }

  @Test("every f16 value widens exactly and narrows back to itself")
  func float16Exhaustive() {
    for bits in 0...UInt16.max {
      let f = FloatConversion.float(fromFloat16: bits)
      let native = Float(Float16(bitPattern: bits))
      if native.isNaN {
        #expect(f.isNaN)
        #expect(FloatConversion.float16(from: f) & 0x7C00 == 0x7C00)
        continue
      }
      #expect(f.bitPattern == native.bitPattern, "\(bits)")
      #expect(FloatConversion.float16(from: f) == bits, "\(bits)")
    }
  }

  @Test("f32 → f16 rounds to nearest even, with subnormals, overflow and NaN")
  func float16Rounding() {
    var rng = SplitMix64(state: 11)
    var values = Self.specials
    for _ in 0..<200_000 {
      // Concentrate on the f16 range, subnormals included.
      let exponent = Int(rng.next() % 40) - 27
      let mantissa = Float(rng.next() % (1 << 23)) / Float(1 << 23)
      let sign: Float = rng.next() % 2 == 0 ? 1 : -1
      values.append(sign * (1 + mantissa) * Float(sign: .plus, exponent: exponent, significand: 1))
    }
    for x in values {
      let h = FloatConversion.float16(from: x)
      let back = Double(FloatConversion.float(fromFloat16: h))
      if x.isNaN {
        #expect(back.isNaN)
        continue
      }
      let expected = referenceRound(Double(x), mantissaBits: 10, minExponent: -14, maxExponent: 15)
      #expect(
        back == expected || (back == 0 && expected == 0), "\(x) → \(back), expected \(expected)")
      // The native conversion agrees where the platform has it.
      #expect(h == Float16(x).bitPattern || x.isNaN, "\(x)")
    }
  }

  @Test("f8 tables decode known values")
  func float8() {
    let e4m3 = FloatConversion.float8E4M3Table
    #expect(e4m3[0x00] == 0)
    #expect(e4m3[0x38] == 1)  // 0.0111.000: exponent 7 − bias 7
    #expect(e4m3[0x7E] == 448)  // the largest finite value
    #expect(e4m3[0x7F].isNaN)
    #expect(e4m3[0x01] == 0.001953125)  // smallest subnormal, 2⁻⁹
    #expect(e4m3[0xB8] == -1)
    let e5m2 = FloatConversion.float8E5M2Table
    #expect(e5m2[0x3C] == 1)
    #expect(e5m2[0x7B] == 57344)
    #expect(e5m2[0x7C] == .infinity)
    #expect(e5m2[0x7D].isNaN)
    #expect(e5m2[0x01] == 1.5258789e-05)
  }
}
