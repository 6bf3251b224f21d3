/// The merge methods `merge` runs: mergekit 0.1.5's, in the order the README lists them.
///
/// Adding a method is one new file declaring a ``MergeMethod`` and one line here.
public enum MethodRegistry {
  /// Every method.
  public static let methods: [any MergeMethod.Type] = [
    Linear.self,
    TaskArithmetic.self, Ties.self, DareTies.self, DareLinear.self, Breadcrumbs.self,
    BreadcrumbsTies.self, Della.self, DellaLinear.self,
    Slerp.self, NuSlerp.self, MultiSlerp.self, NearSwap.self, ModelStock.self, Karcher.self,
    SCE.self, ArceeFusion.self, RAM.self, RAMPlusTL.self,
    Passthrough.self,
  ]

  /// Every method's spec, in registry order.
  public static let specs: [MethodSpec] = methods.map { $0.spec }

  private static let byName: [String: any MergeMethod.Type] = Dictionary(
    uniqueKeysWithValues: methods.map { ($0.spec.name, $0) })

  /// The method named `name` in `merge_method`.
  public static func method(named name: String) -> (any MergeMethod.Type)? { byName[name] }

  /// Every parameter name some method takes.
  public static var parameterNames: Set<String> {
    Set(specs.flatMap { $0.parameters.map(\.name) })
  }

  /// The names of the methods that take a parameter named `name`.
  public static func methods(taking name: String) -> [String] {
    specs.filter { $0.parameter(name) != nil }.map(\.name)
  }
}
