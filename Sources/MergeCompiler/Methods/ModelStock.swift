/// mergekit's Model Stock: interpolate between the base and the average of the models, by how
/// aligned their task vectors are.
public enum ModelStock: WholeTensorMethod {
  static let filterWise = ParameterSpec(
    "filter_wise", .bool, .shared, default: 0,
    "compute the interpolation ratio per row instead of per tensor")

  public static let spec = MethodSpec(
    name: "model_stock", prettyName: "Model Stock", parameters: [filterWise], base: .required,
    minInputs: 3,
    summary: "interpolate between the base and the average of the models by their geometry",
    reference: "https://arxiv.org/abs/2403.19522")

  static func kernel(for tensor: TensorPlan) throws(LoweringError) -> Kernel {
    Kernel(filterWise: try tensor.flag(filterWise))
  }

  /// Inputs: base, models.
  struct Kernel: WholeTensorKernel {
    /// Whether the ratio is computed per row (`filter_wise`) rather than per tensor.
    var filterWise: Bool

    var cost: KernelCost { KernelCost(weight: 3, bytesPerInput: 4, bytes: 8) }

    /// The interpolation between the base and the models' average.
    ///
    /// The mean pairwise cosine of the task vectors (per row with `filter_wise`) sets
    /// `t = N·cos / (1 + (N−1)·cos)`; the result is `t·mean(models) + (1−t)·base`. Dot products
    /// accumulate in f64; the rest is f32 as in mergekit.
    func callAsFunction(_ inputs: [[Float]], shape: [Int]) -> [Float] {
      typealias M = WholeTensorMath
      let (w0, offsets) = M.taskVectors(inputs)
      let ws = inputs.dropFirst()
      let n = w0.count
      let layout: M.Layout = filterWise ? M.vectors(shape: shape, alongFirst: false) : .flat(n)
      let count = Float(ws.count)
      var result = [Float](repeating: 0, count: n)
      for v in 0..<layout.count {
        let cosTheta = Self.meanCosine(offsets, vector: v, of: layout)
        let denominator = 1 + (count - 1) * cosTheta
        let t: Float = abs(denominator) < 1e-6 ? 0 : (count * cosTheta) / denominator
        for j in 0..<layout.length {
          let k = layout.index(v, j)
          var sum: Float = 0
          for w in ws { sum += w[k] }
          let average = sum / count
          result[k] = t * average + (1 - t) * w0[k]
        }
      }
      return result
    }

    /// The mean cosine over pairs of `offsets` in vector `v`, each clamped to [−1, 1].
    static func meanCosine(_ offsets: [[Float]], vector v: Int, of layout: WholeTensorMath.Layout)
      -> Float
    {
      var total: Float = 0
      var pairs = 0
      for a in offsets.indices {
        for b in (a + 1)..<offsets.count {
          var dab = 0.0
          var naa = 0.0
          var nbb = 0.0
          for j in 0..<layout.length {
            let k = layout.index(v, j)
            dab += Double(offsets[a][k]) * Double(offsets[b][k])
            naa += Double(offsets[a][k]) * Double(offsets[a][k])
            nbb += Double(offsets[b][k]) * Double(offsets[b][k])
          }
          let product = max(Float(naa.squareRoot()) * Float(nbb.squareRoot()), 1e-6)
          total += min(1, max(-1, Float(dab) / product))
          pairs += 1
        }
      }
      return pairs > 0 ? total / Float(pairs) : 0
    }
  }
}
