/// mergekit's NearSwap: take the other model's value where it is close to the base's.
public enum NearSwap: WholeTensorMethod {
  static let t = ParameterSpec(
    "t", .float, .shared, default: nil, required: true, range: .nonNegative,
    "similarity threshold: entries closer than t take the other model's value")

  public static let spec = MethodSpec(
    name: "nearswap", prettyName: "NearSwap", parameters: [t], base: .required, minInputs: 2,
    maxInputs: 2, summary: "take the other model's value where it is close to the base",
    reference: "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    Kernel(t: Float(try tensor.number(t)))
  }

  /// Inputs: base, other.
  struct Kernel: WholeTensorKernel {
    var t: Float

    var cost: KernelCost { KernelCost(weight: 1) }

    /// `w = clamp(t / max(|a−b|, 1e-6), 0, 1)`, `w·b + (1−w)·a`, in f32.
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      let a = inputs[0]
      let b = inputs[1]
      return a.indices.map { i in
        let w = min(1, max(0, t / max(abs(a[i] - b[i]), 1e-6)))
        return w * b[i] + (1 - w) * a[i]
      }
    }
  }
}
